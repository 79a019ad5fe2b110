#!/usr/bin/python3
"""compare_policy.py: compares what the policy compiler produced (JSON lines from
policy-case) with the recorded conformance cases, normalised as the cases' README says.
Prints one line per failing case id with its first difference, then "N passed, M failed";
exit status 1 when a failure is not listed in the known-differences file."""
import ipaddress
import json
import sys
from collections import Counter

SEMANTIC = False

TAILNET_CAPS = {
    "default-auto-update", "https://tailscale.com/cap/file-sharing",
    "https://tailscale.com/cap/is-admin", "https://tailscale.com/cap/is-owner",
    "https://tailscale.com/cap/ssh", "https://tailscale.com/cap/tailnet-lock",
    "probe-udp-lifetime", "ssh-behavior-v1", "ssh-env-vars", "store-appc-routes",
    "tailnet-display-name",
}
DEFAULT_PROTOS = (1, 6, 17, 58)


def canon(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def norm_rule(r):
    src = tuple(sorted(set(r.get("SrcIPs") or [])))
    protos = tuple(sorted(set(r.get("IPProto") or DEFAULT_PROTOS)))
    if "CapGrant" in r:
        cg = tuple(sorted(canon([sorted(set(g.get("Dsts") or [])), g.get("CapMap")])
                          for g in r["CapGrant"] or []))
        return canon(["cap", src, cg])
    dst = sorted({(d["IP"], d["Ports"]["First"], d["Ports"]["Last"])
                  for d in r.get("DstPorts") or []})
    return canon(["ip", src, protos, dst])


def intervals(texts):
    """Address texts ("*", address, CIDR, "a-b") as merged (family, first, last) tuples."""
    out = []
    for t in texts:
        if t == "*":
            out += [(4, 0, 2**32 - 1), (6, 0, 2**128 - 1)]
        elif "-" in t:
            a, b = t.split("-", 1)
            a, b = ipaddress.ip_address(a), ipaddress.ip_address(b)
            out.append((a.version, int(a), int(b)))
        else:
            n = ipaddress.ip_network(t, strict=False)
            out.append((n.version, int(n.network_address), int(n.broadcast_address)))
    out.sort()
    merged = []
    for f, lo, hi in out:
        if merged and merged[-1][0] == f and lo <= merged[-1][2] + 1:
            merged[-1] = (f, merged[-1][1], max(hi, merged[-1][2]))
        else:
            merged.append((f, lo, hi))
    return merged


def semantic_filter(rules):
    """Per (protocols, first, last): the union of sources and of destinations; CapGrant
    rules as in strict mode."""
    acc, caps = {}, []
    for r in rules:
        if "CapGrant" in r:
            caps.append(norm_rule(r))
            continue
        protos = tuple(sorted(set(r.get("IPProto") or DEFAULT_PROTOS)))
        for d in r.get("DstPorts") or []:
            key = (protos, d["Ports"]["First"], d["Ports"]["Last"])
            s, t = acc.setdefault(key, ([], []))
            s += r.get("SrcIPs") or []
            t.append(d["IP"])
    return sorted(caps), {k: (intervals(s), intervals(t)) for k, (s, t) in acc.items()}


def norm_action(a):
    a = dict(a or {})
    if "holdAndDelegate" in a:
        url = a["holdAndDelegate"]
        i = url.find("/machine/")
        a["holdAndDelegate"] = url[i:] if i >= 0 else url
    return a


def norm_ssh(r):
    return canon({
        "principals": sorted(set(canon(p) for p in r.get("principals") or [])),
        "sshUsers": r.get("sshUsers") or {},
        "action": norm_action(r.get("action")),
        "acceptEnv": r.get("acceptEnv") or [],
    })


def first_multiset_diff(what, exp, got):
    ce, cg = Counter(exp), Counter(got)
    missing = list((ce - cg).elements())
    extra = list((cg - ce).elements())
    if missing:
        return "%s: missing %s" % (what, missing[0])
    if extra:
        return "%s: unexpected %s" % (what, extra[0])
    return None


def cmp_set(what, exp, got):
    e, g = set(exp or []), set(got or [])
    if e != g:
        return "%s: missing %s, unexpected %s" % (what, sorted(e - g), sorted(g - e))
    return None


def cmp_whois(exp, got):
    if not exp and not got:
        return None
    if not exp or not got or set(exp) != set(got):
        return "whois_cap_map: expected %s, got %s" % (canon(exp), canon(got))
    for k in exp:
        e, g = exp[k], got[k]
        if isinstance(e, list) and isinstance(g, list):
            if Counter(map(canon, e)) != Counter(map(canon, g)):
                return "whois_cap_map[%s]: expected %s, got %s" % (k, canon(e), canon(g))
        elif canon(e) != canon(g):
            return "whois_cap_map[%s]: expected %s, got %s" % (k, canon(e), canon(g))
    return None


def cmp_peer(case, peer, exp, got):
    d = cmp_set("allowed_ips", exp.get("allowed_ips"), got.get("allowed_ips"))
    if d:
        return d
    d = cmp_set("primary_routes", exp.get("primary_routes"), got.get("primary_routes"))
    if d:
        return d
    if canon(exp.get("cap_map")) != canon(got.get("cap_map")):
        return "cap_map: expected %s, got %s" % (canon(exp.get("cap_map")),
                                                 canon(got.get("cap_map")))
    if case["category"] == "grant" and "whois_cap_map" in exp:
        return cmp_whois(exp.get("whois_cap_map"), got.get("whois_cap_map"))
    return None


def cmp_capmap(exp, got):
    e = {k: v for k, v in (exp or {}).items() if k not in TAILNET_CAPS}
    g = {k: v for k, v in (got or {}).items() if k not in TAILNET_CAPS}
    if set(e) != set(g):
        return "cap_map: missing %s, unexpected %s" % (sorted(set(e) - set(g)),
                                                       sorted(set(g) - set(e)))
    for k in e:
        if canon(e[k]) != canon(g[k]):
            return "cap_map[%s]: expected %s, got %s" % (k, canon(e[k]), canon(g[k]))
    return None


def cmp_node(case, exp, got):
    d = cmp_set("addresses", exp.get("addresses"), got.get("addresses"))
    d = d or cmp_set("allowed_ips", exp.get("allowed_ips"), got.get("allowed_ips"))
    d = d or cmp_set("primary_routes", exp.get("primary_routes"), got.get("primary_routes"))
    if SEMANTIC:
        if not d and semantic_filter(exp.get("packet_filter_rules") or []) != \
                semantic_filter(got.get("packet_filter_rules") or []):
            d = "packet_filter_rules: different access (semantic comparison)"
    else:
        d = d or first_multiset_diff("packet_filter_rules",
                                     [norm_rule(r) for r in exp.get("packet_filter_rules") or []],
                                     [norm_rule(r) for r in got.get("packet_filter_rules") or []])
    d = d or cmp_set("peers", exp.get("peers"), got.get("peers"))
    if d:
        return d
    for peer, pe in sorted((exp.get("peer_info") or {}).items()):
        pg = (got.get("peer_info") or {}).get(peer)
        if pg is None:
            return "peer_info[%s]: missing" % peer
        d = cmp_peer(case, peer, pe, pg)
        if d:
            return "peer_info[%s].%s" % (peer, d)
    es = [norm_ssh(r) for r in exp.get("ssh_rules") or []]
    gs = [norm_ssh(r) for r in got.get("ssh_rules") or []]
    if es != gs:
        for i in range(max(len(es), len(gs))):
            a = es[i] if i < len(es) else None
            b = gs[i] if i < len(gs) else None
            if a != b:
                return "ssh_rules[%d]: expected %s, got %s" % (i, a, b)
    if case["category"] == "nodeattrs" and "cap_map" in exp:
        return cmp_capmap(exp.get("cap_map"), got.get("cap_map"))
    return None


def cmp_case(case, got):
    if got is None:
        return "no output from the compiler"
    if "load_error" in got:
        return "case not loadable: " + got["load_error"]
    if case["accepted"] != got["accepted"]:
        if case["accepted"]:
            return "policy rejected: %s" % got.get("error")
        return "policy accepted, expected rejection: %s" % case.get("api_error")
    if not case["accepted"]:
        return None
    skip = set(case.get("uncaptured_nodes") or [])
    for host, exp in sorted((case.get("expected") or {}).items()):
        if host in skip:
            continue
        g = (got.get("nodes") or {}).get(host)
        if g is None:
            return "%s: node missing from compiler output" % host
        d = cmp_node(case, exp, g)
        if d:
            return "%s: %s" % (host, d)
    return None


def main():
    global SEMANTIC
    args = sys.argv[1:]
    if args and args[0] == "--semantic":
        SEMANTIC = True
        args = args[1:]
    results, files, known_file = args[0], args[1], args[2]
    known = {}
    try:
        with open(known_file) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    cid, _, why = line.partition(" ")
                    known[cid] = why.strip()
    except FileNotFoundError:
        pass
    got = {}
    with open(results) as f:
        for line in f:
            o = json.loads(line)
            got[o["file"]] = o
    passed = failed = unexpected = 0
    with open(files) as f:
        paths = [l.strip() for l in f if l.strip()]
    for path in paths:
        with open(path) as cf:
            case = json.load(cf)
        d = cmp_case(case, got.get(path))
        if d is None:
            passed += 1
            continue
        failed += 1
        mark = " (known difference)" if case["id"] in known else ""
        if not mark:
            unexpected += 1
        print("%s/%s: %s%s" % (case["category"], case["id"], d[:400], mark))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
