# test_dns.py: DNS settings from directives (nameservers, override local DNS, split DNS,
# search domains, extra records) merged with TS2021DNSConfigFile reach a node's map; a graceful
# restart with changed directives serves the new settings; bad values stop `apache2 -t` with a
# message naming the directive and the value.
import json
import os
import signal
import time

import pytest

from test_config import configtest, edit
from test_control import Node, new_authkey, tailnet_server
from test_lifecycle import apache_pid

DNS_DIRECTIVES = """    TS2021DNSNameservers 1.1.1.1 https://dns.example.test/dns-query
    TS2021DNSSplit corp.example.test 10.0.0.53 10.0.0.54
    TS2021DNSSplit local.example.test
    TS2021DNSSearchDomains Example.COM other.example.test
    TS2021DNSExtraRecord grafana.tail.example.test A 100.64.0.99
    TS2021DNSExtraRecord grafana.tail.example.test AAAA fd7a:115c:a1e0::99
"""


def first_dns(s, name="dnsnode"):
    key = new_authkey(s, "dora", "--reusable")
    n = Node(s, name)
    st, reg = n.register(key)
    assert st == 200 and reg["MachineAuthorized"], reg
    first = n.open_map()
    n.close()
    return first["DNSConfig"]


def test_directives_reach_the_map(server_factory, tmp_path):
    dnsfile = tmp_path / "dns.json"
    dnsfile.write_text(json.dumps({
        "Resolvers": [{"Addr": "9.9.9.9"}, {"Addr": "1.1.1.1"}],
        "Routes": {"corp.example.test.": [{"Addr": "192.0.2.1"}]},
    }))
    s = tailnet_server(server_factory, tmp_path,
                       DNS_DIRECTIVES + f"    TS2021DNSConfigFile {dnsfile}\n")
    dns = first_dns(s)
    # the file's resolvers first, the directive's after, without the duplicate
    assert [r["Addr"] for r in dns["Resolvers"]] == [
        "9.9.9.9", "1.1.1.1", "https://dns.example.test/dns-query"]
    assert "FallbackResolvers" not in dns
    # the directive's split route replaces the file's for the same domain
    assert [r["Addr"] for r in dns["Routes"]["corp.example.test."]] == ["10.0.0.53", "10.0.0.54"]
    assert dns["Routes"]["local.example.test."] == []
    assert dns["Domains"][0] == "tail.example.test"
    assert "example.com" in dns["Domains"] and "other.example.test" in dns["Domains"]
    assert {"Name": "grafana.tail.example.test", "Type": "A", "Value": "100.64.0.99"} \
        in dns["ExtraRecords"]
    assert {"Name": "grafana.tail.example.test", "Type": "AAAA",
            "Value": "fd7a:115c:a1e0::99"} in dns["ExtraRecords"]
    assert dns["Proxied"] is True


def test_override_off_gives_fallback_resolvers(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path,
                       "    TS2021DNSNameservers 1.1.1.1\n    TS2021DNSOverrideLocal Off\n")
    dns = first_dns(s)
    assert dns["FallbackResolvers"] == [{"Addr": "1.1.1.1"}]
    assert "Resolvers" not in dns


def test_graceful_restart_serves_changed_settings(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path, "    TS2021DNSNameservers 1.1.1.1\n")
    assert first_dns(s, "before")["Resolvers"] == [{"Addr": "1.1.1.1"}]
    # Change the running configuration, then a graceful restart.
    edit(os.path.join(s.state, "apache", "httpd.conf"), "TS2021DNSNameservers 1.1.1.1",
         "TS2021DNSNameservers 8.8.8.8")
    os.kill(apache_pid(s), signal.SIGUSR1)
    deadline = time.time() + 20
    while True:
        try:
            dns = first_dns(s, "after")
            if dns.get("Resolvers") == [{"Addr": "8.8.8.8"}]:
                break
        except (AssertionError, OSError):
            pass
        assert time.time() < deadline, "new DNS settings not served after a graceful restart"
        time.sleep(0.5)


@pytest.mark.parametrize("line,message", [
    ("TS2021DNSNameservers 1.1.1", "TS2021DNSNameservers: '1.1.1' is not an IP address"),
    ("TS2021DNSNameservers http://dns.example/q",
     "'http://dns.example/q' is not an IP address or an https://"),
    ("TS2021DNSSplit bad..domain 10.0.0.1", "TS2021DNSSplit: 'bad..domain' is not a DNS name"),
    ("TS2021DNSSplit corp.example nameserver",
     "TS2021DNSSplit: 'nameserver' is not an IP address"),
    ("TS2021DNSSplit", "TS2021DNSSplit: a domain, then its resolvers"),
    ("TS2021DNSSearchDomains -x.example", "TS2021DNSSearchDomains: '-x.example' is not a DNS"),
    ("TS2021DNSExtraRecord a.example TXT hello", "only A and AAAA"),
    ("TS2021DNSExtraRecord a.example A fd7a::1", "'fd7a::1' is not an IPv4 address"),
    ("TS2021DNSExtraRecord a.example AAAA 10.0.0.1", "'10.0.0.1' is not an IPv6 address"),
    ("TS2021DNSExtraRecord a.example A", "TS2021DNSExtraRecord takes three arguments"),
    ("TS2021DNSOverrideLocal maybe", "TS2021DNSOverrideLocal must be On or Off"),
])
def test_bad_dns_directives_stop_configtest(conf_path, line, message):
    edit(conf_path, "TS2021 On", "TS2021 On\n    " + line)
    rc, out = configtest(conf_path)
    assert rc != 0 and message in out, out


def test_file_field_of_wrong_type_stops_configtest(conf_path, tmp_path):
    dnsfile = tmp_path / "dns.json"
    dnsfile.write_text('{"Resolvers": "1.1.1.1"}')
    edit(conf_path, "TS2021 On", f"TS2021 On\n    TS2021DNSConfigFile {dnsfile}\n"
                                 "    TS2021DNSNameservers 9.9.9.9")
    rc, out = configtest(conf_path)
    assert rc != 0 and '"Resolvers" must be an array' in out and str(dnsfile) in out, out
