# test_ui.py: the web admin UI (SetHandler ts2021-ui) against a real Apache: how its files are
# served (always), and, in headless Chromium driven by Selenium (Debian's chromium,
# chromium-driver, python3-selenium), its pages over the real admin API (SetHandler
# ts2021-admin) behind Basic authentication: the nodes page with two registered nodes
# (screenshot checked), approving a waiting device, creating a pre-auth key that then works,
# users, the policy editor's errors, and escaping of device-supplied text.
# The browser tests skip only when the module has no ts2021-admin handler.
import base64
import hashlib
import json
import os
import pathlib
import re
import shutil
import struct
import subprocess
import tempfile
import time
import zlib

import pytest

from conftest import TOP
from test_control import DERP, Node, ctl, new_authkey
from tsclient import control

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MODULES = "/usr/lib/apache2/modules"
ADMIN_PASSWORD = "s3cret-admin"
WIDTH, HEIGHT = 1280, 800


@pytest.fixture
def authdir():
    d = tempfile.mkdtemp(prefix="ts2021-ui-", dir="/tmp")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def ui_server(server_factory, authdir, extra=""):
    htpasswd = authdir / "htpasswd"
    digest = base64.b64encode(hashlib.sha1(ADMIN_PASSWORD.encode()).digest()).decode()
    htpasswd.write_text(f"admin:{{SHA}}{digest}\n")
    os.chmod(htpasswd, 0o644)
    glob = authdir / "global.conf"
    glob.write_text("".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so\n"
                            for m in ("auth_basic", "authn_file", "authz_user")))
    conf = authdir / "ui.conf"
    conf.write_text(f"""    TS2021DERPMapFile {DERP}
    TS2021BaseDomain tail.example.test
    TS2021OfflineGrace 1
{extra}
    <Location /admin>
        AuthType Basic
        AuthName "tailnet admin"
        AuthBasicProvider file
        AuthUserFile {htpasswd}
        Require user admin
    </Location>
    <Location /admin/api>
        SetHandler ts2021-admin
    </Location>
    <Location /admin/ui>
        SetHandler ts2021-ui
    </Location>
""")
    return server_factory(extra_args=["--global-conf", str(glob), "--extra-conf", str(conf)])


def auth():
    raw = f"admin:{ADMIN_PASSWORD}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


# ---- serving (no admin API or browser needed) ----

def test_ui_files_served(server_factory, authdir):
    s = ui_server(server_factory, authdir)
    assert s.request("GET", "/admin/ui/")[0] == 401           # Apache's auth applies
    st, hdr, body = s.request("GET", "/admin/ui", headers=auth())
    assert st == 301 and hdr["location"] == "/admin/ui/"
    st, hdr, body = s.request("GET", "/admin/ui/", headers=auth())
    assert st == 200 and hdr["content-type"].startswith("text/html")
    page = body.decode()
    assert '<body data-api="/admin/api">' in page
    assert '<script src="app.js" defer></script>' in page and "http" not in page.split("<body")[0]
    csp = hdr["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    assert hdr["x-frame-options"] == "DENY"
    assert s.request("GET", "/admin/ui/index.html", headers=auth())[2] == body
    for name, ctype in (("app.js", "text/javascript"), ("app.css", "text/css")):
        st, hdr, data = s.request("GET", f"/admin/ui/{name}", headers=auth())
        assert st == 200 and hdr["content-type"].startswith(ctype)
        assert data == (pathlib.Path(TOP) / "mod_ts2021" / "ui" / name).read_bytes()
        etag = hdr["etag"]
        st, hdr, data = s.request("GET", f"/admin/ui/{name}",
                                  headers=dict(auth(), **{"If-None-Match": etag}))
        assert st == 304 and data == b""
        st, _, data = s.request("HEAD", f"/admin/ui/{name}", headers=auth())
        assert st == 200 and data == b""
    # no external resources anywhere
    js = (pathlib.Path(TOP) / "mod_ts2021" / "ui" / "app.js").read_text()
    assert not re.search(r"https?://", js + page)
    assert ".innerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js
    assert s.request("GET", "/admin/ui/nope.js", headers=auth())[0] == 404
    assert s.request("GET", "/admin/ui/../ui/app.js", headers=auth())[0] == 200
    assert s.request("POST", "/admin/ui/", body=b"x", headers=auth())[0] == 405
    assert s.request("GET", "/key?v=145")[0] == 200


def test_ui_api_url_directive(server_factory, authdir):
    s = ui_server(server_factory, authdir,
                  extra="    TS2021AdminAPIURL https://api.example.test:8443/tailnet/api?x=1&y=2\n")
    st, hdr, body = s.request("GET", "/admin/ui/", headers=auth())
    assert st == 200
    assert 'data-api="https://api.example.test:8443/tailnet/api?x=1&amp;y=2"' in body.decode()
    assert "connect-src 'self' https://api.example.test:8443;" in hdr["content-security-policy"]


def test_embedded_ui_is_current():
    r = subprocess.run([os.path.join(TOP, "build", "embed-ui"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr


# ---- in the browser ----

@pytest.fixture
def admin_server(server_factory, authdir):
    s = ui_server(server_factory, authdir)
    st, hdr, body = s.request("GET", "/admin/api/info", headers=auth())
    if st == 404 and not hdr.get("content-type", "").startswith("application/json"):
        pytest.skip("this module has no ts2021-admin handler (the admin API is not merged): "
                    f"GET /admin/api/info answered {st}")
    return s


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), \
        "install chromium and chromium-driver (build/debian-packages.txt)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-extensions", "--no-first-run", f"--window-size={WIDTH},{HEIGHT}"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                          {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1,
                           "mobile": False})
        # Basic credentials on every request the page makes, as a logged-in browser would
        d.execute_cdp_cmd("Network.enable", {})
        d.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": auth()})
        yield d
    finally:
        d.quit()


def open_page(d, s, page, wait_for=None):
    d.get(f"{s.url}/admin/ui/#{page}")
    return wait_loaded(d, page, wait_for)


def wait_loaded(d, page, wait_for=None, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        loaded = d.execute_script("return document.getElementById('page').dataset.loaded")
        text = d.find_element("id", "page").text
        if loaded == page and (wait_for is None or wait_for(text)):
            return text
        if loaded == "error":
            raise AssertionError(d.find_element("id", "flash").text)
        time.sleep(0.1)
    raise AssertionError(f"page {page} did not load: {d.find_element('tag name', 'body').text}")


def go(d, page, wait_for=None):
    d.execute_script("document.getElementById('page').dataset.loaded = ''; "
                     "if (location.hash === '#' + arguments[0]) show(); "
                     "else location.hash = arguments[0];", page)
    return wait_loaded(d, page, wait_for)


def go_until(d, page, pred, timeout=15):
    """Reloads the page's data (as its own refresh would) until pred(text) holds."""
    deadline = time.time() + timeout
    while True:
        text = go(d, page)
        if pred(text):
            return text
        if time.time() > deadline:
            raise AssertionError(f"page {page} never showed what was expected:\n{text}")
        time.sleep(0.5)


def png_facts(data):
    """(width, height, distinct scanlines) of an 8-bit RGB/RGBA non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, ihdr
    raw = zlib.decompress(idat)
    stride = 1 + w * (3 if ctype == 2 else 4)
    assert len(raw) == h * stride
    return w, h, len({raw[i * stride + 1:(i + 1) * stride] for i in range(h)})


def test_nodes_page_two_nodes_screenshot(admin_server, browser):
    s = admin_server
    key = new_authkey(s, "alice", "--reusable")
    a, b = Node(s, "web-frontend"), Node(s, "db-backend")
    host_a = control.hostinfo("web-frontend", routable=["10.1.0.0/24"])
    st, reg = control.post_json(a.conn, "/machine/register",
                                control.register_request(a.ident, auth_key=key, host=host_a))
    assert st == 200 and reg["MachineAuthorized"], reg
    st, reg = b.register(key)
    assert st == 200 and reg["MachineAuthorized"], reg
    a.stream = control.MapStream(a.conn, control.map_request(
        a.ident, endpoints=["198.51.100.7:41641"], host=host_a))
    assert "Node" in a.stream.next()
    b.open_map()
    nodes = {n["hostname"]: n for n in json.loads(ctl(s, "nodes", "list", "--json").stdout)}

    text = open_page(browser, s, "nodes",
                     lambda t: "web-frontend" in t and "db-backend" in t and "online" in t)
    assert "Nodes (2)" in text
    for name in ("web-frontend", "db-backend"):
        assert nodes[name]["ipv4"] in text and nodes[name]["ipv6"] in text
    assert text.count("alice") >= 2 and "linux" in text and "1.96.0-test" in text
    header = browser.find_element("id", "server-info").text
    assert "2 nodes" in header
    shot = browser.get_screenshot_as_png()
    out = os.environ.get("TS_TEST_SCREENSHOT_DIR")
    if out:
        pathlib.Path(out, f"ui-nodes-{s.db}.png").write_bytes(shot)
    w, h, distinct = png_facts(shot)
    assert (w, h) == (WIDTH, HEIGHT)
    assert distinct > 40, "the screenshot looks blank"
    assert len(shot) > 20000

    # approve a's advertised route from the page
    ida = nodes["web-frontend"]["id"]
    assert "10.1.0.0/24" in text
    row = browser.find_element("css selector", f"tr[data-node='{ida}']")
    box = row.find_element("css selector", "input[data-prefix='10.1.0.0/24']")
    assert not box.is_selected()
    box.click()
    row.find_element("xpath", ".//button[text()='Save routes']").click()
    wait_loaded(browser, "nodes", lambda t: "Routes of web-frontend saved" in
                browser.find_element("id", "flash").text)
    shown = json.loads(ctl(s, "nodes", "show", str(ida), "--json").stdout)
    assert any(r["prefix"] == "10.1.0.0/24" and r["approved"] for r in shown["routes"]), shown
    row = browser.find_element("css selector", f"tr[data-node='{ida}']")
    assert row.find_element("css selector", "input[data-prefix='10.1.0.0/24']").is_selected()

    # b goes away: the page shows it offline after the grace period and a refresh
    b.close()
    text = go_until(browser, "nodes", lambda t: "offline" in t)
    assert "last seen" in text
    # expire a's key from the page
    row = browser.find_element("css selector", f"tr[data-node='{nodes['web-frontend']['id']}']")
    row.find_element("xpath", ".//button[text()='Expire']").click()
    browser.switch_to.alert.accept()
    wait_loaded(browser, "nodes", lambda t: "expired" in t)
    assert json.loads(ctl(s, "nodes", "show", str(nodes["web-frontend"]["id"]), "--json")
                      .stdout)["expired"]
    a.close()


def test_approvals_page_approves_waiting_device_and_escapes(admin_server, browser):
    s = admin_server
    evil = '<img src=x onerror="window.__xss=1">'
    n = Node(s, evil)
    st, reg = n.register()
    assert st == 200 and reg["AuthURL"], reg
    req = control.register_request(n.ident, followup=reg["AuthURL"], host=control.hostinfo(evil))
    held = n.conn.start("POST", "/machine/register", json.dumps(req).encode())

    text = open_page(browser, s, "approvals", lambda t: evil in t)
    assert "Pending approvals (1)" in text
    assert browser.execute_script("return document.querySelectorAll('#page img').length") == 0
    assert browser.execute_script("return window.__xss === undefined")
    assert browser.find_element("id", "pending-count").text == "1"
    row = browser.find_element("css selector", "tr[data-registration]")
    row.find_element("css selector", "input[name=user]").send_keys("carol")
    row.find_element("xpath", ".//button[text()='Approve']").click()
    wait_loaded(browser, "approvals", lambda t: "No device is waiting" in t)
    assert "approved for carol" in browser.find_element("id", "flash").text
    assert n.conn.wait_for(lambda: held.ended, timeout=10)
    answer = json.loads(bytes(held.body))
    assert answer["MachineAuthorized"] and answer["Login"]["LoginName"] == "carol"
    text = go(browser, "nodes", lambda t: "carol" in t)
    assert evil in text
    assert browser.execute_script("return document.querySelectorAll('#page img').length") == 0
    n.close()


def test_keys_page_creates_a_working_preauth_key(admin_server, browser):
    s = admin_server
    ctl(s, "users", "create", "dave")
    open_page(browser, s, "keys")
    form = browser.find_element("id", "preauth-form")
    form.find_element("css selector", "select[name=user]").send_keys("dave")
    form.find_element("css selector", "input[name=reusable]").click()
    form.find_element("css selector", "input[name=description]").send_keys("laptops <b>")
    form.find_element("css selector", "button[type=submit]").click()
    deadline = time.time() + 10
    while time.time() < deadline and not browser.find_elements("css selector", ".newkey input"):
        time.sleep(0.1)
    key = browser.find_element("css selector", ".newkey input").get_attribute("value")
    assert re.fullmatch(r"tskey-auth-\S+", key), key
    browser.find_element("css selector", ".newkey button.copy").click()
    deadline = time.time() + 5
    while time.time() < deadline and \
            browser.find_element("css selector", ".newkey button.copy").text != "Copied":
        time.sleep(0.1)
    assert browser.find_element("css selector", ".newkey button.copy").text == "Copied"
    text = browser.find_element("id", "page").text
    assert "dave" in text and "reusable" in text and "laptops <b>" in text
    keys = json.loads(ctl(s, "preauthkeys", "list", "--json").stdout)
    assert len(keys) == 1 and keys[0]["reusable"] and key.startswith(
        "tskey-auth-" + keys[0]["prefix"])
    # the key shown on the page registers a node
    n = Node(s, "from-ui-key")
    st, reg = n.register(key)
    assert st == 200 and reg["MachineAuthorized"] and reg["Login"]["LoginName"] == "dave", reg
    n.close()
    # expire it from the page
    browser.find_element("xpath", "//tr[@data-key]//button[text()='Expire']").click()
    wait_loaded(browser, "keys", lambda t: "expired" in t.lower())
    n2 = Node(s, "too-late")
    st, reg = n2.register(key)
    assert reg.get("Error") and not reg.get("MachineAuthorized"), reg
    n2.close()


def test_users_and_policy_pages(admin_server, browser):
    s = admin_server
    open_page(browser, s, "users")
    form = browser.find_element("css selector", "form.inline")
    form.find_element("css selector", "input[name=name]").send_keys("erin")
    form.find_element("css selector", "input[name=email]").send_keys("erin@example.test")
    form.find_element("css selector", "button[type=submit]").click()
    wait_loaded(browser, "users", lambda t: "erin@example.test" in t)
    assert "erin" in [u["name"] for u in json.loads(ctl(s, "users", "list", "--json").stdout)]
    # the API's error reaches the page: the same name again
    form = browser.find_element("css selector", "form.inline")
    form.find_element("css selector", "input[name=name]").send_keys("erin")
    form.find_element("css selector", "button[type=submit]").click()
    deadline = time.time() + 5
    while time.time() < deadline and "already exists" not in \
            browser.find_element("id", "flash").text:
        time.sleep(0.1)
    assert "already exists" in browser.find_element("id", "flash").text

    go(browser, "policy")
    ta = browser.find_element("id", "policy-text")
    bad = '{\n  // comment\n  "acls": [\n    {"action": "accept",\n  ]\n}\n'
    browser.execute_script("arguments[0].value = arguments[1]", ta, bad)
    browser.find_element("xpath", "//button[text()='Save policy']").click()
    deadline = time.time() + 5
    while time.time() < deadline and not browser.find_elements("css selector", "ul.errors li"):
        time.sleep(0.1)
    err = browser.find_element("css selector", "ul.errors li").text
    assert re.match(r"line \d+", err), err
    assert "not saved" in browser.find_element("id", "flash").text
    st, _, body = s.request("GET", "/admin/api/policy", headers=auth())
    assert json.loads(body)["policy"] is None          # nothing written
    good = '{\n  // everyone\n  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]},],\n}\n'
    browser.execute_script("arguments[0].value = arguments[1]", ta, good)
    browser.find_element("xpath", "//button[text()='Save policy']").click()
    wait_loaded(browser, "policy", lambda t: "In force since" in t)
    st, _, body = s.request("GET", "/admin/api/policy", headers=auth())
    assert json.loads(body)["policy"] == good
