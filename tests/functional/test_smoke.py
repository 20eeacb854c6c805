import json


def post(client, path, body, headers=None):
    return client.http.post(path, body=json.dumps(body) if not isinstance(body, (bytes, str)) else body,
                            headers=headers or {"Content-Type": "application/json"})


def test_smoke(client, efs_root):
    r = post(client, "/ingest", {"data": "sample model data", "filename": "test-model.pt"})
    assert r.status_code == 200, r.body
    body = json.loads(r.body)
    print(body)
    r = post(client, "/predict", {"fileId": body["fileId"], "model": "test-model.pt"})
    print(r.status_code, r.body)
    assert r.status_code == 200
