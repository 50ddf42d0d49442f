"""A local stand-in for the Hub's upload API, so push tests exercise huggingface_hub's real call path.

It answers the endpoints ``HfApi.create_repo`` + ``HfApi.upload_folder`` use (read from huggingface_hub
2.x): ``POST /api/repos/create``, ``POST /api/validate-yaml``, ``POST /api/models/<repo>/preupload/<rev>``,
the git-LFS batch endpoint ``POST /<repo>.git/info/lfs/objects/batch`` with a ``PUT`` upload URL, and
``POST /api/models/<repo>/commit/<rev>`` (NDJSON). Every request is recorded; anything else gets a 404
and is recorded too, so a test can assert nothing unexpected was called. Files marked ``lfs`` (by
suffix) go through the LFS upload and are checked against their sha256, as the Hub does.

Bound to 127.0.0.1 on a free port; stops when the context exits.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


# Requests huggingface_hub makes on its own whenever it builds headers online (its agent-harness
# registry, fetched once a day); not part of an upload, so not "unexpected".
BACKGROUND_CALLS = frozenset({"/api/agent-harnesses"})


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Repo:
    private: bool | None
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)


class FakeHub:
    def __init__(self, lfs_suffixes: tuple[str, ...] = ()) -> None:
        self.lfs_suffixes = lfs_suffixes
        self.requests: list[Recorded] = []
        self.unexpected: list[Recorded] = []
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------------------------- routes

    def route(self, request: Recorded) -> tuple[int, Any]:
        path = request.path.split("?", 1)[0]
        if request.method == "POST" and path == "/api/repos/create":
            payload = request.json()
            repo_id = f"{payload.get('organization') or 'tester'}/{payload['name']}"
            visibility = payload.get("visibility")
            self.repos.setdefault(repo_id, Repo(private=None if visibility is None else visibility == "private"))
            return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id}
        if request.method == "POST" and path == "/api/validate-yaml":
            return 200, {"errors": [], "warnings": []}
        if match := re.fullmatch(r"/api/models/(.+)/preupload/([^/]+)", path):
            files = request.json()["files"]
            return 200, {"files": [
                {"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(self.lfs_suffixes) else "regular",
                 "shouldIgnore": False, "oid": None} for f in files]}
        if match := re.fullmatch(r"/(.+)\.git/info/lfs/objects/batch", path):
            objects = request.json()["objects"]
            return 200, {"transfer": "basic", "objects": [
                {"oid": o["oid"], "size": o["size"], "authenticated": True,
                 "actions": {"upload": {"href": f"{self.url}/lfs-upload/{o['oid']}"}}} for o in objects]}
        if request.method == "PUT" and (match := re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", path)):
            if hashlib.sha256(request.body).hexdigest() != match[1]:
                return 400, {"error": "sha256 mismatch"}
            self.lfs_objects[match[1]] = request.body
            return 200, {}
        if match := re.fullmatch(r"/api/models/(.+)/commit/([^/]+)", path):
            return self._commit(match[1], request.body)
        if request.method == "GET" and path in BACKGROUND_CALLS:
            return 404, {"error": "not served here"}  # huggingface_hub treats these as best-effort
        self.unexpected.append(request)
        return 404, {"error": f"no route for {request.method} {path}"}

    def _commit(self, repo_id: str, body: bytes) -> tuple[int, Any]:
        if repo_id not in self.repos:
            return 404, {"error": f"repository {repo_id} not found"}
        repo = self.repos[repo_id]
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(item["value"] for item in lines if item["key"] == "header")
        for item in lines:
            value = item["value"]
            if item["key"] == "file":
                repo.files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "lfsFile":
                if value["oid"] not in self.lfs_objects:
                    return 422, {"error": f"LFS object {value['oid']} was never uploaded"}
                repo.files[value["path"]] = self.lfs_objects[value["oid"]]
        repo.commits.append(header)
        oid = hashlib.sha1(body).hexdigest()
        return 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}

    # ------------------------------------------------------------------------------------- plumbing

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                request = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                   self._body())
                hub.requests.append(request)
                status, payload = hub.route(request)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while size := int(self.rfile.readline().strip() or b"0", 16):
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(parts)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

        return Handler
