# test_build.py: the build's user-facing edges: configure names the missing Debian package,
# make install stages the module and the a2enmod files, and the staged files load.
import os
import subprocess

from conftest import TOP, APACHE


def test_configure_names_missing_package(tmp_path):
    env = dict(os.environ, PKG_CONFIG_LIBDIR=str(tmp_path / "none"), PKG_CONFIG_PATH="")
    r = subprocess.run([os.path.join(TOP, "configure")], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "APR not found: install the Debian package libapr1-dev" in r.stderr


def test_configure_names_missing_apxs(tmp_path):
    r = subprocess.run([os.path.join(TOP, "configure"), "--with-apxs=/nonexistent/apxs"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode != 0
    assert "install the Debian package apache2-dev" in r.stderr


def test_make_install_stages_module_and_a2enmod_files(tmp_path):
    dest = tmp_path / "root"
    r = subprocess.run(["make", "-s", "install", f"DESTDIR={dest}"], cwd=TOP,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    so = dest / "usr/lib/apache2/modules/mod_ts2021.so"
    load = dest / "etc/apache2/mods-available/ts2021.load"
    conf = dest / "etc/apache2/mods-available/ts2021.conf"
    assert so.exists() and load.exists() and conf.exists()
    text = load.read_text()
    assert "# Depends: dbd" in text
    assert "LoadModule ts2021_module /usr/lib/apache2/modules/mod_ts2021.so" in text
    # The staged module and its .conf pass a config test (module path rewritten to DESTDIR).
    httpd = tmp_path / "httpd.conf"
    httpd.write_text(
        f"ServerRoot {tmp_path}\nServerName localhost\nListen 127.0.0.1:1\n"
        f"PidFile {tmp_path}/pid\nErrorLog {tmp_path}/error.log\n"
        "LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so\n"
        "LoadModule dbd_module /usr/lib/apache2/modules/mod_dbd.so\n"
        + text.replace("/usr/lib/apache2/modules/mod_ts2021.so", str(so))
        + conf.read_text())
    r = subprocess.run([APACHE, "-t", "-f", str(httpd)], capture_output=True, text=True)
    assert r.returncode == 0 and "Syntax OK" in r.stdout + r.stderr, r.stderr
