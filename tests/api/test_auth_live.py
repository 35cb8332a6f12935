"""Authentication through a real ``torc-graph serve`` (gunicorn): the published torc-client 0.6.4
(API client, CLI, job runner under an executor token), ``torc-graph tokens``, and TLS."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys

import pytest
import requests

from torc_graph.testing import LiveServer, clean_env, cli_argv

pytestmark = pytest.mark.slow

TORC_CLI = [sys.executable, "-c", "from torc.cli.torc import cli; cli()"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("authlive")
    with LiveServer(f"sqlite:///{tmp / 'db.sqlite'}", workers=2, cwd=tmp,
                    log_path=tmp / "server.log") as live:
        yield live
    assert "Traceback" not in (tmp / "server.log").read_text()


def tg(server, *args, token=None):
    """``torc-graph ARGS --url BASE`` with ``token`` (default: the admin's) in the environment."""
    env = clean_env(TORC_GRAPH_TOKEN=token or server.token, XDG_CONFIG_HOME="/nonexistent")
    return subprocess.run(cli_argv(*args, "--url", server.base_url), env=env,
                          capture_output=True, text=True, timeout=60)


def test_torc_api_client_credential_forms(server):
    from torc.openapi_client import ApiClient, Configuration, DefaultApi
    from torc.openapi_client.exceptions import ApiException

    base = f"{server.base_url}/_db/workflows/torc-service"
    anonymous = DefaultApi(ApiClient(Configuration(host=base)))
    with pytest.raises(ApiException) as exc:
        anonymous.list_workflows()
    assert exc.value.status == 401
    # Configuration's own credential fields are ignored by the generated client (no security
    # scheme): the documented Python way is a default header.
    bearer = DefaultApi(ApiClient(Configuration(host=base), header_name="Authorization",
                                  header_value=f"Bearer {server.token}"))
    wf = bearer.add_workflow({"user": "api", "name": "via-header"})
    # the base-URL form used by the torc CLI and runner
    assert server.torc_api().get_workflow(wf.key).name == "via-header"


def test_tokens_cli_create_list_revoke(server):
    made = tg(server, "tokens", "create", "--name", "bob", "--role", "reader", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    token, key = created["token"], created["document"]["_key"]
    assert tg(server, "workflows", "list", token=token).returncode == 0
    listed = json.loads(tg(server, "tokens", "list", "--json").stdout)
    assert [t["name"] for t in listed if t["_key"] == key] == ["bob"]
    assert token not in json.dumps(listed)
    # a reader may not manage tokens nor create workflows
    denied = tg(server, "tokens", "list", token=token)
    assert denied.returncode == 4 and "may not" in denied.stderr
    assert tg(server, "tokens", "revoke", key).returncode == 0
    gone = tg(server, "workflows", "list", token=token)
    assert gone.returncode == 4 and "revoked" in gone.stderr
    bad = tg(server, "tokens", "create", "--name", "x", "--role", "executor")
    assert bad.returncode == 4 and "needs a workflow" in bad.stderr


def _diamond(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    return {
        "name": "auth-diamond",
        "files": [{"name": "a", "path": str(out / "a")}, {"name": "b", "path": str(out / "b")}],
        "jobs": [
            {"name": "make", "command": f"bash -c 'echo 1 > {out / 'a'}'", "output_files": ["a"]},
            {"name": "use", "command": f"bash -c 'cat {out / 'a'} > {out / 'b'}'",
             "input_files": ["a"], "output_files": ["b"]},
        ],
    }


def test_torc_cli_and_job_runner_with_an_executor_token(server, tmp_path):
    """The editor creates and starts the workflow; the torc runner runs it with an executor
    token of that workflow (token in the base URL, given through TORC_DATABASE_URL)."""
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(_diamond(tmp_path)))
    editor = json.loads(tg(server, "tokens", "create", "--name", "ed", "--role", "editor",
                           "--json").stdout)["token"]
    env = {k: v for k, v in clean_env(HOME=str(tmp_path)).items() if not k.startswith("TORC_")}

    def torc(token, *args, check=True):
        e = {**env, "TORC_DATABASE_URL": f"{server.base_url}/_db/{token}/torc-service"}
        done = subprocess.run([*TORC_CLI, "-n", "-F", "json", *args], env=e, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        if check:
            assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
        return done

    wf = json.loads(torc(editor, "workflows", "create-from-json-file",
                         str(spec_path)).stdout)["key"]
    torc(editor, "-k", wf, "workflows", "start")
    made = tg(server, "tokens", "create", "--name", "node", "--role", "executor",
              "--workflow", wf, "--expires-in", "1h", "--json")
    executor = json.loads(made.stdout)["token"]
    run = torc(executor, "-k", wf, "jobs", "run", "-p", "1", "-o", str(tmp_path / "out"))
    statuses = {j["name"]: j["status"] for j in server.client().list_jobs(wf)}
    assert statuses == {"make": "done", "use": "done"}, run.stderr[-3000:]
    assert (tmp_path / "data" / "b").read_text().strip() == "1"
    # the executor cannot change the workflow itself (the whole table: test_auth.py)
    denied = requests.post(f"{server.base_url}/workflows/{wf}/reset_status",
                           headers={"Authorization": f"Bearer {executor}"})
    assert denied.status_code == 403


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


def test_tls(tmp_path):
    certfile, keyfile = _self_signed(tmp_path)
    with LiveServer(f"sqlite:///{tmp_path / 'tls.db'}", workers=1, scheme="https",
                    serve_args=("--certfile", str(certfile), "--keyfile", str(keyfile)),
                    log_path=tmp_path / "server.log") as s:
        assert s.base_url.startswith("https://")
        resp = requests.get(f"{s.base_url}/workflows", headers=s.headers, verify=str(certfile))
        assert resp.status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{s.base_url}/ping", timeout=10)  # unknown CA: refused by default
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{s.base_url.replace('https', 'http')}/ping", timeout=10)
        # torc_graph's client and CLI with the CA bundle in the environment
        done = subprocess.run(cli_argv("workflows", "list", "--url", s.base_url),
                              env=clean_env(TORC_GRAPH_TOKEN=s.token,
                                            REQUESTS_CA_BUNDLE=str(certfile)),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


def test_serve_rejects_half_a_tls_configuration(tmp_path):
    done = subprocess.run(cli_argv("serve", "--certfile", str(tmp_path / "c.pem")),
                          env=clean_env(), capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 2 and "--certfile and --keyfile go together" in done.stderr
