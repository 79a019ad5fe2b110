# test_login.py: the interactive login page (SetHandler ts2021-register) behind real Apache
# authentication (mod_auth_basic, an htpasswd file and a group file made here), on SQLite and
# MariaDB: who may see the page, the confirm form's CSRF token, approval for the logged-in
# user (created on first login) waking the client's held follow-up, rejection, bad and expired
# ids, escaping, and the TS2021LoginUserVar/Expr name sources.
import base64
import hashlib
import html
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse

import pytest

from conftest import APACHE, TOP, Server, make_state_dir, mysql_exec
from test_control import DERP, Node, ctl
from tsclient import control

MODULES = "/usr/lib/apache2/modules"
PASSWORDS = {"alice": "wonderland", "bob": "builder", "mallory": "evil"}


def basic(user):
    raw = f"{user}:{PASSWORDS[user]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.fixture
def authdir():
    """A directory the Apache children (www-data when run as root) can read."""
    d = tempfile.mkdtemp(prefix="ts2021-auth-", dir="/tmp")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def login_server(server_factory, tmp_path, extra="", **kw):
    """A tailnet whose /register is open to the group 'tailnet' (alice, bob), not mallory.
    tmp_path must be readable by the Apache children (the authdir fixture)."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("".join(
        f"{u}:{{SHA}}{base64.b64encode(hashlib.sha1(p.encode()).digest()).decode()}\n"
        for u, p in PASSWORDS.items()))
    groups = tmp_path / "groups"
    groups.write_text("tailnet: alice bob\n")
    for f in (htpasswd, groups):
        os.chmod(f, 0o644)
    glob = tmp_path / "global.conf"
    glob.write_text("".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so\n"
                            for m in ("auth_basic", "authn_file", "authz_user",
                                      "authz_groupfile", "rewrite")))
    conf = tmp_path / "login.conf"
    conf.write_text(f"""    TS2021DERPMapFile {DERP}
    TS2021BaseDomain tail.example.test
{extra}
    <Location /register>
        SetHandler ts2021-register
        AuthType Basic
        AuthName "tailnet"
        AuthBasicProvider file
        AuthUserFile {htpasswd}
        AuthGroupFile {groups}
        Require group tailnet
        # a logged-in user outside the group gets 403, not a new password prompt (401)
        AuthzSendForbiddenOnFailure On
    </Location>
""")
    return server_factory(extra_args=["--global-conf", str(glob), "--extra-conf", str(conf)],
                          **kw)


def start_login(s, name):
    """A node asking interactively: (node, auth id, the held follow-up response)."""
    n = Node(s, name)
    st, reg = n.register()
    assert st == 200 and reg["AuthURL"].startswith(s.url + "/register/tsreg-"), reg
    req = control.register_request(n.ident, followup=reg["AuthURL"],
                                   host=control.hostinfo(name))
    held = n.conn.start("POST", "/machine/register", json.dumps(req).encode())
    return n, reg["AuthURL"].rsplit("/", 1)[1], held


def page(s, auth_id, user=None):
    st, hdr, body = s.request("GET", f"/register/{auth_id}", headers=basic(user) if user else {})
    return st, hdr, body.decode()


def form_token(body):
    m = re.search(r'name="token" value="([0-9a-f]{16}\.[0-9a-f]{64})"', body)
    assert m, body
    return m.group(1)


def post(s, auth_id, user, fields):
    data = urllib.parse.urlencode(fields).encode()
    hdr = dict(basic(user), **{"Content-Type": "application/x-www-form-urlencoded"})
    st, _, body = s.request("POST", f"/register/{auth_id}", body=data, headers=hdr)
    return st, body.decode()


def users(s):
    return sorted(u["name"] for u in json.loads(ctl(s, "users", "list", "--json").stdout))


def nodes(s):
    return json.loads(ctl(s, "nodes", "list", "--json").stdout)


def sql(s, query):
    if s.db == "sqlite":
        r = subprocess.run(["sqlite3", f"{s.state}/db/ts2021.sqlite", query],
                           capture_output=True, text=True, check=True)
        return r.stdout
    return mysql_exec(query, database=re.search(r"dbname=(\S+)", s.dbparams).group(1))


def held_still_waiting(n, held):
    with pytest.raises((TimeoutError, OSError)):
        n.conn.pump(0.3)
    return not held.ended


def test_login_page_auth_outcomes_and_approval(server_factory, authdir):
    s = login_server(server_factory, authdir)
    n, auth_id, held = start_login(s, "gamma")

    # Apache's auth decides who sees the page.
    st, hdr, _ = page(s, auth_id)
    assert st == 401 and hdr["www-authenticate"].startswith("Basic")
    st, _, _ = page(s, auth_id, "mallory")
    assert st == 403
    bad = {"Authorization": "Basic " + base64.b64encode(b"alice:wrong").decode()}
    assert s.request("GET", f"/register/{auth_id}", headers=bad)[0] == 401

    st, hdr, body = page(s, auth_id, "alice")
    assert st == 200, body
    assert hdr["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in hdr["content-security-policy"]
    assert hdr["cache-control"] == "no-store"
    assert "gamma" in body and "linux" in body and "1.96.0-test" in body
    hexkey = n.ident.node_key.split(":")[1]
    assert " ".join(hexkey[i:i + 4] for i in range(0, 16, 4)) in body  # fingerprint
    assert n.ident.node_key in body
    assert "<strong>alice</strong>" in body
    token = form_token(body)

    # Forged confirmations: refused, nothing written, the client still waits.
    before_users = users(s)
    assert post(s, auth_id, "alice", {"action": "approve"})[0] == 403
    assert post(s, auth_id, "alice", {"action": "approve", "token": token[:-1] + "0"
                                      if token[-1] != "0" else token[:-1] + "1"})[0] == 403
    assert post(s, auth_id, "alice", {"action": "approve", "token": "garbage"})[0] == 403
    # alice's token does not work for bob (bound to the user) nor for another id.
    assert post(s, auth_id, "bob", {"action": "approve", "token": token})[0] == 403
    other = "tsreg-" + "0" * 32
    assert post(s, other, "alice", {"action": "approve", "token": token})[0] == 404
    # The token in a JSON body, or in an oversized form: refused.
    hdr = dict(basic("alice"), **{"Content-Type": "application/json"})
    st, _, _ = s.request("POST", f"/register/{auth_id}", headers=hdr,
                         body=json.dumps({"action": "approve", "token": token}).encode())
    assert st == 403
    big = urllib.parse.urlencode({"action": "approve", "token": token, "pad": "x" * 10000})
    hdr = dict(basic("alice"), **{"Content-Type": "application/x-www-form-urlencoded"})
    st, _, _ = s.request("POST", f"/register/{auth_id}", body=big.encode(), headers=hdr)
    assert st == 413, st
    # Posting with mallory's credentials never reaches the handler.
    assert post(s, auth_id, "mallory", {"action": "approve", "token": token})[0] == 403
    assert nodes(s) == [] and users(s) == before_users
    assert held_still_waiting(n, held)

    # The good confirmation: alice is created on her first login and owns the node; the
    # held follow-up is answered at once.
    t0 = time.time()
    st, body = post(s, auth_id, "alice", {"action": "approve", "token": token})
    assert st == 200, body
    assert "Device added" in body and "<strong>gamma</strong>" in body
    assert n.conn.wait_for(lambda: held.ended, timeout=10)
    waited = time.time() - t0
    answer = json.loads(bytes(held.body))
    assert held.status == 200 and answer["MachineAuthorized"] and not answer.get("AuthURL")
    assert answer["Login"]["LoginName"] == "alice", answer
    assert waited < 3, f"the held follow-up took {waited:.2f} s"
    assert "alice" in users(s)
    [node] = nodes(s)
    assert node["user"] == "alice" and node["hostname"] == "gamma"
    assert node["node_key"] == n.ident.node_key
    n.open_map()

    # The same link again: already approved; a replayed form changes nothing.
    st, _, body = page(s, auth_id, "alice")
    assert st == 409 and "already approved" in body
    assert post(s, auth_id, "alice", {"action": "approve", "token": token})[0] == 409
    assert len(nodes(s)) == 1
    n.close()

    # A second device of bob's: bob is created too; alice's user is reused on her next one.
    n2, id2, held2 = start_login(s, "delta")
    st, body = post(s, id2, "bob", {"action": "approve",
                                    "token": form_token(page(s, id2, "bob")[2])})
    assert st == 200, body
    assert n2.conn.wait_for(lambda: held2.ended, timeout=10)
    assert json.loads(bytes(held2.body))["MachineAuthorized"]
    assert users(s) == sorted(before_users + ["alice", "bob"])
    assert sorted(x["user"] for x in nodes(s)) == ["alice", "bob"]
    n2.close()
    # Apache keeps serving.
    assert s.request("GET", "/key?v=145")[0] == 200


def test_login_page_reject(server_factory, authdir):
    s = login_server(server_factory, authdir)
    n, auth_id, held = start_login(s, "epsilon")
    token = form_token(page(s, auth_id, "bob")[2])
    st, body = post(s, auth_id, "bob", {"action": "reject", "token": token})
    assert st == 200 and "rejected" in body
    assert n.conn.wait_for(lambda: held.ended, timeout=10)
    answer = json.loads(bytes(held.body))
    assert "rejected by bob" in answer["Error"] and not answer.get("MachineAuthorized")
    assert nodes(s) == [] and "bob" not in users(s)
    st, _, body = page(s, auth_id, "bob")
    assert st == 410 and "rejected" in body
    assert post(s, auth_id, "bob", {"action": "bogus", "token": token})[0] == 410
    n.close()


def test_login_page_bad_and_expired_ids(server_factory, authdir):
    s = login_server(server_factory, authdir)
    for bad in ("tsreg-" + "0" * 32, "tsreg-xyz", "nothing", "tsreg-" + "A" * 32):
        st, _, body = page(s, bad, "alice")
        assert st == 404 and "unknown" in body.lower(), (bad, body)
    # Unauthenticated requests for unknown ids are asked to log in first (nothing leaks).
    assert page(s, "tsreg-" + "0" * 32)[0] == 401

    n, auth_id, held = start_login(s, "zeta")
    token = form_token(page(s, auth_id, "alice")[2])
    sql(s, f"UPDATE registration_requests SET expires_at = 1000000 WHERE auth_id = '{auth_id}'")
    st, _, body = page(s, auth_id, "alice")
    assert st == 410 and "expired" in body
    st, body = post(s, auth_id, "alice", {"action": "approve", "token": token})
    assert st == 410 and "expired" in body
    assert nodes(s) == [] and "alice" not in users(s)
    # Wrong methods.
    assert s.request("PUT", f"/register/{auth_id}", body=b"x", headers=basic("alice"))[0] == 405
    n.close()


def test_login_page_escapes_device_fields(server_factory, authdir):
    s = login_server(server_factory, authdir)
    evil = 'x"><script>alert(1)</script>&'
    n = Node(s, "eta")
    host = control.hostinfo(evil, extra={"RequestTags": ["tag:<img src=x>"],
                                         "OSVersion": "<b>6.1</b>"})
    st, reg = control.post_json(n.conn, "/machine/register",
                                control.register_request(n.ident, host=host))
    assert st == 200, reg
    auth_id = reg["AuthURL"].rsplit("/", 1)[1]
    st, _, body = page(s, auth_id, "alice")
    assert st == 200
    assert "<script>" not in body and "<img" not in body and "<b>6.1" not in body
    assert html.escape(evil, quote=True).replace("&#x27;", "'") in body.replace("&#x27;", "'")
    assert "tag:&lt;img src=x&gt;" in body
    n.close()


def test_login_user_from_variable_and_expression(server_factory, authdir):
    # TS2021LoginUserVar: an environment variable (as mod_auth_openidc sets OIDC_CLAIM_*).
    s = login_server(server_factory, authdir, extra="""    TS2021LoginUserVar OIDC_CLAIM_email
    <Location /register/>
        RewriteEngine On
        RewriteCond %{REMOTE_USER} =alice
        RewriteRule ^ - [E=OIDC_CLAIM_email:alice@example.test]
    </Location>
""")
    n, auth_id, held = start_login(s, "theta")
    st, _, body = page(s, auth_id, "alice")
    assert st == 200 and "<strong>alice@example.test</strong>" in body
    token = form_token(body)
    # bob gets no claim: the page refuses him clearly.
    st, _, body = page(s, auth_id, "bob")
    assert st == 403 and "user name" in body
    assert "TS2021LoginUserVar OIDC_CLAIM_email is not set" in s.errlog()
    assert post(s, auth_id, "alice", {"action": "approve", "token": token})[0] == 200
    assert n.conn.wait_for(lambda: held.ended, timeout=10)
    [node] = nodes(s)
    assert node["user"] == "alice@example.test"
    n.close()
    s.stop()

    # TS2021LoginUserExpr: a string expression over the request.
    second = authdir / "second"
    second.mkdir(mode=0o755)
    s2 = login_server(server_factory, second,
                      extra='    TS2021LoginUserExpr "%{REMOTE_USER}-vpn"\n')
    n, auth_id, held = start_login(s2, "iota")
    st, _, body = page(s2, auth_id, "bob")
    assert st == 200 and "<strong>bob-vpn</strong>" in body
    assert post(s2, auth_id, "bob", {"action": "approve", "token": form_token(body)})[0] == 200
    assert n.conn.wait_for(lambda: held.ended, timeout=10)
    assert [x["user"] for x in nodes(s2)] == ["bob-vpn"]
    n.close()


def test_login_page_without_auth_configured_refuses(server_factory, authdir):
    # SetHandler without any AuthType: no r->user, so nobody can approve.
    conf = authdir / "open.conf"
    conf.write_text(f"""    TS2021DERPMapFile {DERP}
    <Location /register>
        SetHandler ts2021-register
    </Location>
""")
    s = server_factory(extra_args=["--extra-conf", str(conf)])
    n, auth_id, held = start_login(s, "kappa")
    st, _, body = s.request("GET", f"/register/{auth_id}")
    assert st == 403 and "user name" in body.decode()
    assert "no authenticated user" in s.errlog()
    assert held_still_waiting(n, held)
    n.close()


def test_login_across_two_servers_sharing_the_key(server_factory, authdir, db):
    # Two Apaches on one MariaDB with the same key file: the form of one is accepted by the
    # other, and the approval reaches the follow-up held by the first; a server with another
    # key refuses the form.
    if db != "mysql":
        pytest.skip("two servers share one database only on MariaDB")
    s1 = login_server(server_factory, authdir)
    s2 = login_server(server_factory, authdir, fresh_db=False, start=False)
    s3 = login_server(server_factory, authdir, fresh_db=False)
    keys = os.path.join(s2.state, "keys")
    os.makedirs(keys, mode=0o700, exist_ok=True)
    shutil.copy(os.path.join(s1.state, "keys", "127.0.0.1.key"), keys)
    s2.start()
    assert s2.request("GET", "/key?v=145")[2] == s1.request("GET", "/key?v=145")[2]
    assert s3.request("GET", "/key?v=145")[2] != s1.request("GET", "/key?v=145")[2]

    n, auth_id, held = start_login(s1, "roaming")
    token = form_token(page(s1, auth_id, "alice")[2])
    assert post(s3, auth_id, "alice", {"action": "approve", "token": token})[0] == 403
    assert held_still_waiting(n, held)
    t0 = time.time()
    st, body = post(s2, auth_id, "alice", {"action": "approve", "token": token})
    assert st == 200, body
    assert n.conn.wait_for(lambda: held.ended, timeout=10)
    assert time.time() - t0 < 3
    assert json.loads(bytes(held.body))["MachineAuthorized"]
    assert page(s1, auth_id, "alice")[0] == 409
    n.close()


def doc_block(name):
    """The ```apache block after '<!-- config: NAME -->' in docs/login.md."""
    text = open(os.path.join(TOP, "docs", "login.md")).read()
    m = re.search(r"<!-- config: " + name + r" -->\s*```apache\n(.*?)```", text, re.S)
    assert m, name
    return m.group(1)


@pytest.mark.parametrize("name,mods", [
    ("basic", ("auth_basic", "authn_file", "authz_user", "authz_groupfile")),
    ("ldap", ("auth_basic", "ldap", "authnz_ldap")),
])
def test_docs_login_configs_pass_configtest(name, mods):
    state = make_state_dir()
    try:
        s = Server(state, "sqlite", None)
        path = s.config_only()
        text = open(path).read()
        load = "".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so\n" for m in mods)
        assert "TS2021 On" in text
        # exec: runs at configuration time: give it the file it reads
        secret = os.path.join(state, "ldap-bind-password")
        with open(secret, "w") as f:
            f.write("not-a-real-password\n")
        block = doc_block(name).replace("/etc/apache2/ldap-bind-password", secret)
        text = text.replace("TS2021 On", "TS2021 On\n" + block, 1)
        open(path, "w").write(load + text)
        r = subprocess.run([APACHE, "-t", "-f", path], capture_output=True, text=True)
        assert r.returncode == 0 and "Syntax OK" in r.stdout + r.stderr, r.stderr
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.parametrize("line,message", [
    ('TS2021LoginUserExpr "%{REMOTE_USER"', "TS2021LoginUserExpr: '%{REMOTE_USER'"),
    ('TS2021LoginUserVar ""', "TS2021LoginUserVar takes one argument"),
    ("TS2021LoginUserVar HTTP_X_USER", "TS2021LoginUserVar: 'HTTP_X_USER' would come from a "
     "request header"),
    ('TS2021AdminAPIURL "/a b"', "TS2021AdminAPIURL: '/a b' is not a URL path"),
])
def test_bad_login_directives_fail_configtest(line, message):
    state = make_state_dir()
    try:
        path = Server(state, "sqlite", None).config_only()
        text = open(path).read().replace("TS2021 On", "TS2021 On\n    " + line, 1)
        open(path, "w").write(text)
        r = subprocess.run([APACHE, "-t", "-f", path], capture_output=True, text=True)
        assert r.returncode != 0 and message in r.stderr, r.stderr
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind not installed")
def test_login_page_and_ui_under_valgrind(authdir):
    from test_memcheck import errors_in

    made = []

    def factory(extra_args=()):
        s = Server(make_state_dir(), "sqlite", None,
                   list(extra_args) + ["--valgrind", str(authdir / "valgrind.log")])
        made.append(s)
        assert s.start()
        return s

    s = login_server(factory, authdir, extra="    <Location /admin/ui>\n"
                     "        SetHandler ts2021-ui\n    </Location>\n")
    try:
        n, auth_id, held = start_login(s, "valgrind-node")
        assert page(s, auth_id)[0] == 401
        st, _, body = page(s, auth_id, "alice")
        assert st == 200
        token = form_token(body)
        assert post(s, auth_id, "alice", {"action": "approve", "token": "0" * 81})[0] == 403
        assert post(s, auth_id, "bob", {"action": "approve", "token": token})[0] == 403
        assert post(s, "tsreg-" + "1" * 32, "alice", {"token": token})[0] == 404
        assert post(s, auth_id, "alice", {"action": "approve", "token": token})[0] == 200
        assert n.conn.wait_for(lambda: held.ended, timeout=30)
        assert page(s, auth_id, "alice")[0] == 409
        n.close()
        for path in ("/admin/ui/", "/admin/ui/app.js", "/admin/ui", "/admin/ui/x.js"):
            assert s.request("GET", path)[0] in (200, 301, 404)
        s.stop()
        log = (authdir / "valgrind.log").read_text()
        assert "Memcheck" in log and "ERROR SUMMARY" in log, log[-2000:]
        bad = errors_in(log)
        assert not bad, "\n\n".join(bad[:5])
    finally:
        for m in made:
            m.stop(check_log=False)
            shutil.rmtree(m.state, ignore_errors=True)
