/* ts_crypto.h: the primitives Noise_IK_25519_ChaChaPoly_BLAKE2s needs, behind one prefix.
 * BLAKE2s/HMAC come from libcrypto (libsodium has no BLAKE2s); X25519 and AEAD from libsodium. */
#ifndef TS_CRYPTO_H
#define TS_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define TS_CRYPTO_HASH_LEN   32   /* BLAKE2s-256 output, Noise HASHLEN */
#define TS_CRYPTO_BLOCK_LEN  64   /* BLAKE2s block, Noise BLOCKLEN */
#define TS_CRYPTO_KEY_LEN    32   /* X25519 keys, DH outputs and AEAD keys */
#define TS_CRYPTO_TAG_LEN    16   /* Poly1305 tag */
#define TS_CRYPTO_NONCE_LEN  12   /* ChaCha20-Poly1305 IETF nonce */

/* Call once per process before anything else (sodium_init is idempotent). 0 or -1. */
int ts_crypto_init(void);

/* Unkeyed BLAKE2s-256. 0 on success, -1 if libcrypto lacks BLAKE2s (e.g. FIPS-only provider). */
int ts_crypto_blake2s(uint8_t out[TS_CRYPTO_HASH_LEN], const uint8_t *in, size_t len);

/* RFC 2104 HMAC with BLAKE2s-256 (not BLAKE2s keyed mode). 0 or -1. */
int ts_crypto_hmac_blake2s(uint8_t out[TS_CRYPTO_HASH_LEN], const uint8_t *key, size_t keylen,
                           const uint8_t *in, size_t len);

/* Noise HKDF with two outputs: ck is the chaining key (salt), ikm the input key material. 0 or -1.
 * out1/out2 may alias ck. */
int ts_crypto_hkdf2(uint8_t out1[TS_CRYPTO_HASH_LEN], uint8_t out2[TS_CRYPTO_HASH_LEN],
                    const uint8_t ck[TS_CRYPTO_HASH_LEN], const uint8_t *ikm, size_t ikmlen);

/* X25519(priv, pub). -1 when the result is all zeros (peer sent a small-order point). */
int ts_crypto_x25519(uint8_t out[TS_CRYPTO_KEY_LEN], const uint8_t priv[TS_CRYPTO_KEY_LEN],
                     const uint8_t pub[TS_CRYPTO_KEY_LEN]);

/* Public key of priv. 0 or -1. */
int ts_crypto_x25519_public(uint8_t pub[TS_CRYPTO_KEY_LEN], const uint8_t priv[TS_CRYPTO_KEY_LEN]);

/* Fresh random key pair; priv is stored clamped, as Tailscale stores its keys. 0 or -1. */
int ts_crypto_x25519_keypair(uint8_t priv[TS_CRYPTO_KEY_LEN], uint8_t pub[TS_CRYPTO_KEY_LEN]);

/* TS2021 nonce: 4 zero bytes then the counter big-endian (the Noise spec says little-endian). */
void ts_crypto_nonce(uint8_t nonce[TS_CRYPTO_NONCE_LEN], uint64_t counter);

/* ChaCha20-Poly1305 IETF with the TS2021 nonce. out receives len + TS_CRYPTO_TAG_LEN bytes;
 * out may equal in. 0 or -1. */
int ts_crypto_aead_seal(uint8_t *out, const uint8_t key[TS_CRYPTO_KEY_LEN], uint64_t counter,
                        const uint8_t *ad, size_t adlen, const uint8_t *in, size_t len);

/* Opens len bytes (tag included) into out (len - TS_CRYPTO_TAG_LEN bytes); out may equal in.
 * -1 on a bad tag or len < TS_CRYPTO_TAG_LEN; out is then zeroed. */
int ts_crypto_aead_open(uint8_t *out, const uint8_t key[TS_CRYPTO_KEY_LEN], uint64_t counter,
                        const uint8_t *ad, size_t adlen, const uint8_t *in, size_t len);

/* Cryptographically secure random bytes. */
void ts_crypto_random(uint8_t *out, size_t len);

#endif
