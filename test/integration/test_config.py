# test_config.py: configuration mistakes make `apache2 -t` (and a start) fail with a
# message that says what to fix; a good configuration passes.
import os
import shutil
import subprocess

import pytest

from conftest import APACHE, Server, make_state_dir


@pytest.fixture
def conf():
    state = make_state_dir()
    s = Server(state, "sqlite", None)
    path = s.config_only()
    yield s, path
    s.stop(check_log=False)
    shutil.rmtree(state, ignore_errors=True)


def configtest(path):
    r = subprocess.run([APACHE, "-t", "-f", path], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def edit(path, old, new):
    text = open(path).read()
    assert old in text, old
    open(path, "w").write(text.replace(old, new, 1))


def test_good_config_passes(conf):
    _, path = conf
    rc, out = configtest(path)
    assert rc == 0 and "Syntax OK" in out, out


@pytest.mark.parametrize("old,new,message", [
    ("TS2021 On", "TS2021 Maybe", "TS2021: 'Maybe' is not On or Off"),
    ("TS2021 On", "TS2021 On\n    TS2021MinCapVersion abc",
     "TS2021MinCapVersion: 'abc' is not a number between 1 and 65535"),
    ("TS2021 On", "TS2021 On\n    TS2021MinCapVersion 70000",
     "TS2021MinCapVersion: '70000' is not a number"),
    ("TS2021 On", "TS2021 On\n    TS2021ServerURL ftp://x",
     "TS2021ServerURL: 'ftp://x' is not an http:// or https:// URL"),
    ("TS2021 On", "TS2021 On\n    TS2021ServerURL https://h/path",
     "TS2021ServerURL: 'https://h/path' is not an http:// or https:// URL"),
    ("TS2021 On", "TS2021 On\n    TS2021Unknown x", "Invalid command 'TS2021Unknown'"),
])
def test_bad_directive_values(conf, old, new, message):
    _, path = conf
    edit(path, old, new)
    rc, out = configtest(path)
    assert rc != 0 and message in out, out


def test_missing_mod_dbd(conf):
    _, path = conf
    text = open(path).read()
    text = "\n".join(l for l in text.splitlines()
                     if "mod_dbd.so" not in l and not l.startswith("DBD"))
    open(path, "w").write(text)
    rc, out = configtest(path)
    assert rc != 0 and "TS2021 On needs mod_dbd" in out, out


def test_missing_dbdriver(conf):
    _, path = conf
    text = open(path).read()
    text = "\n".join(l for l in text.splitlines() if not l.startswith("DBD"))
    open(path, "w").write(text)
    rc, out = configtest(path)
    assert rc != 0 and "TS2021 On needs a database: add DBDriver" in out, out


def test_prefork_refused(conf):
    _, path = conf
    edit(path, "mod_mpm_event.so", "mod_mpm_prefork.so")
    edit(path, "mpm_event_module", "mpm_prefork_module")
    rc, out = configtest(path)
    assert rc != 0 and "TS2021 needs a threaded MPM" in out, out


MALFORMED = [
    ("noise privkey:zz\nlegacy privkey:" + "11" * 32 + "\n", "line 1: malformed private key"),
    ("# c\n\nnoise privkey:" + "22" * 32 + "\nbogus privkey:" + "11" * 32 + "\n",
     "line 4: unknown key name"),
    ("noise privkey:" + "22" * 32 + "\nnoise privkey:" + "11" * 32 + "\n", "line 2: key given twice"),
    ("noise privkey:" + "22" * 32 + "\n", "missing the 'legacy privkey:...' line"),
    ("noise privkey:" + "22" * 32 + "\nlegacy privkey:" + "22" * 32 + "\n",
     "the noise and legacy keys must differ"),
    ("noise privkey:" + "22" * 32 + " extra\n", "line 1: expected '<noise|legacy> privkey:"),
]


@pytest.mark.parametrize("content,message", MALFORMED)
def test_malformed_key_file_stops_configtest_and_start(conf, content, message):
    server, path = conf
    keyfile = os.path.join(server.state, "keys", "127.0.0.1.key")
    with open(keyfile, "w") as f:
        f.write(content)
    rc, out = configtest(path)
    assert rc != 0, out
    assert f"key file {keyfile}" in out and message in out, out
    # A start fails too, with the same message in the error log, and the file is kept.
    assert not server.start(expect_ready=False)
    assert message in server.start_error + server.errlog()
    assert open(keyfile).read() == content


def test_unreadable_key_file(conf):
    server, path = conf
    keyfile = os.path.join(server.state, "keys", "127.0.0.1.key")
    os.mkdir(keyfile)  # unreadable as a file, even for root
    rc, out = configtest(path)
    assert rc != 0 and f"cannot read key file {keyfile}" in out, out


def test_explicit_key_file_directive(tmp_path):
    state = make_state_dir()
    keyfile = tmp_path / "my.key"
    extra = tmp_path / "extra.conf"
    extra.write_text(f"    TS2021KeyFile {keyfile}\n")
    server = Server(state, "sqlite", None, ["--extra-conf", str(extra)])
    try:
        assert server.start()
        assert keyfile.exists() and oct(keyfile.stat().st_mode & 0o777) == "0o600"
        assert not os.listdir(os.path.join(state, "keys"))
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)
