/* ts_crypto.c: BLAKE2s, HMAC-BLAKE2s and the Noise HKDF (libcrypto), X25519 and
 * ChaCha20-Poly1305 with TS2021's big-endian nonce (libsodium). */
#include "ts_crypto.h"

#include <limits.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

int ts_crypto_init(void)
{
    return sodium_init() < 0 ? -1 : 0;
}

int ts_crypto_blake2s(uint8_t out[TS_CRYPTO_HASH_LEN], const uint8_t *in, size_t len)
{
    /* libcrypto is never handed a NULL pointer, even for zero bytes. */
    static const uint8_t empty[1];
    unsigned int outlen = 0;
    const EVP_MD *md = EVP_blake2s256();

    if (!md || EVP_Digest(len ? in : empty, len, out, &outlen, md, NULL) != 1
        || outlen != TS_CRYPTO_HASH_LEN) {
        return -1;
    }
    return 0;
}

int ts_crypto_hmac_blake2s(uint8_t out[TS_CRYPTO_HASH_LEN], const uint8_t *key, size_t keylen,
                           const uint8_t *in, size_t len)
{
    static const uint8_t empty[1];
    unsigned int outlen = 0;
    const EVP_MD *md = EVP_blake2s256();

    if (!md || keylen > INT_MAX
        || !HMAC(md, keylen ? key : empty, (int)keylen, len ? in : empty, len, out, &outlen)
        || outlen != TS_CRYPTO_HASH_LEN) {
        return -1;
    }
    return 0;
}

int ts_crypto_hkdf2(uint8_t out1[TS_CRYPTO_HASH_LEN], uint8_t out2[TS_CRYPTO_HASH_LEN],
                    const uint8_t ck[TS_CRYPTO_HASH_LEN], const uint8_t *ikm, size_t ikmlen)
{
    static const uint8_t one = 0x01;
    uint8_t prk[TS_CRYPTO_HASH_LEN];
    uint8_t t[TS_CRYPTO_HASH_LEN + 1];
    int rv = -1;

    if (ts_crypto_hmac_blake2s(prk, ck, TS_CRYPTO_HASH_LEN, ikm, ikmlen) != 0) goto out;
    if (ts_crypto_hmac_blake2s(t, prk, sizeof(prk), &one, 1) != 0) goto out;
    t[TS_CRYPTO_HASH_LEN] = 0x02;
    /* out1 is written only now: it may alias ck, which is no longer needed. */
    memcpy(out1, t, TS_CRYPTO_HASH_LEN);
    if (ts_crypto_hmac_blake2s(out2, prk, sizeof(prk), t, sizeof(t)) != 0) goto out;
    rv = 0;
out:
    sodium_memzero(prk, sizeof(prk));
    sodium_memzero(t, sizeof(t));
    return rv;
}

int ts_crypto_x25519(uint8_t out[TS_CRYPTO_KEY_LEN], const uint8_t priv[TS_CRYPTO_KEY_LEN],
                     const uint8_t pub[TS_CRYPTO_KEY_LEN])
{
    /* libsodium already refuses an all-zero result; the second check keeps that
     * guarantee independent of the library version. */
    if (crypto_scalarmult_curve25519(out, priv, pub) != 0
        || sodium_is_zero(out, TS_CRYPTO_KEY_LEN)) {
        sodium_memzero(out, TS_CRYPTO_KEY_LEN);
        return -1;
    }
    return 0;
}

int ts_crypto_x25519_public(uint8_t pub[TS_CRYPTO_KEY_LEN], const uint8_t priv[TS_CRYPTO_KEY_LEN])
{
    return crypto_scalarmult_curve25519_base(pub, priv) == 0 ? 0 : -1;
}

int ts_crypto_x25519_keypair(uint8_t priv[TS_CRYPTO_KEY_LEN], uint8_t pub[TS_CRYPTO_KEY_LEN])
{
    randombytes_buf(priv, TS_CRYPTO_KEY_LEN);
    priv[0] &= 248;
    priv[31] = (uint8_t)((priv[31] & 127) | 64);
    if (ts_crypto_x25519_public(pub, priv) != 0) {
        sodium_memzero(priv, TS_CRYPTO_KEY_LEN);
        return -1;
    }
    return 0;
}

void ts_crypto_nonce(uint8_t nonce[TS_CRYPTO_NONCE_LEN], uint64_t counter)
{
    int i;

    memset(nonce, 0, 4);
    for (i = 0; i < 8; i++) {
        nonce[4 + i] = (uint8_t)(counter >> (56 - 8 * i));
    }
}

int ts_crypto_aead_seal(uint8_t *out, const uint8_t key[TS_CRYPTO_KEY_LEN], uint64_t counter,
                        const uint8_t *ad, size_t adlen, const uint8_t *in, size_t len)
{
    uint8_t nonce[TS_CRYPTO_NONCE_LEN];

    ts_crypto_nonce(nonce, counter);
    return crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, in, len, ad, adlen, NULL,
                                                     nonce, key) == 0 ? 0 : -1;
}

int ts_crypto_aead_open(uint8_t *out, const uint8_t key[TS_CRYPTO_KEY_LEN], uint64_t counter,
                        const uint8_t *ad, size_t adlen, const uint8_t *in, size_t len)
{
    uint8_t nonce[TS_CRYPTO_NONCE_LEN];

    if (len < TS_CRYPTO_TAG_LEN) return -1;
    ts_crypto_nonce(nonce, counter);
    return crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, in, len, ad, adlen,
                                                     nonce, key) == 0 ? 0 : -1;
}

void ts_crypto_random(uint8_t *out, size_t len)
{
    randombytes_buf(out, len);
}
