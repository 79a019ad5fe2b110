# test_policy_file.py: TS2021PolicyFile is checked by `apache2 -t` (missing file, bad HuJSON
# or bad policy named with its line) and a good one passes.

import pytest

from test_config import configtest, edit


GOOD = """// the tailnet's policy
{
  "groups": {"group:admins": ["alice@example.com"]},
  "acls": [
    {"action": "accept", "src": ["group:admins"], "dst": ["*:*"]},  // admins everywhere
  ],
}
"""


@pytest.mark.parametrize("text,message", [
    (None, "TS2021PolicyFile"),
    ('{"acls": [ {"action": "accept", "src": ["*"], "dst": ["*:*"]}\n', "line"),
    ('{\n  "acls": [\n    {"action": "accept", "src": ["group:nobody"], "dst": ["*:*"]}\n  ]\n}\n',
     "group:nobody"),
    ('{\n  "acls": [\n    {"action": "accept", "src": ["*"], "dst": ["10.0.0.0/33:22"]}\n  ]\n}\n',
     "10.0.0.0/33"),
])
def test_bad_policy_file_stops_configtest(conf_path, tmp_path, text, message):
    path = tmp_path / "policy.hujson"
    if text is not None:
        path.write_text(text)
    edit(conf_path, "TS2021 On", f"TS2021 On\n    TS2021PolicyFile {path}")
    rc, out = configtest(conf_path)
    assert rc != 0 and message in out and "TS2021PolicyFile" in out, out


def test_good_policy_file_passes(conf_path, tmp_path):
    path = tmp_path / "policy.hujson"
    path.write_text(GOOD)
    edit(conf_path, "TS2021 On", f"TS2021 On\n    TS2021PolicyFile {path}")
    rc, out = configtest(conf_path)
    assert rc == 0 and "Syntax OK" in out, out
