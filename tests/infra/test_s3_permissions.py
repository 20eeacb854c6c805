"""Every S3 action the code performs is allowed on every path it travels.

The code's S3 calls are found in its source (every method called on the
client of chalicelib/s3.py) and mapped to IAM actions by the one list that
module owns (``s3.IAM_ACTIONS``). A static call graph from each Lambda
handler in app.py gives the calls each function can reach; each must be
granted by the role the packaged stack gives that function (infra/iam.tf,
chalice.tf.json) and, unless the client sends it itself (a presigned URL),
by the policy of the VPC's S3 gateway endpoint (infra/network.tf), which
every request from a function travels and which moto does not evaluate.
A new S3 call without all three fails here.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from chalicelib import s3
from tests.infra.test_deployed_shape import block, statements

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "chalicelib"
CLIENT_FACTORIES = frozenset({"client", "bounded_client", "_make_client"})
# Call-graph edges a function never takes, each with the reason. Static
# reachability over-approximates: these are the known branches it cannot see.
EDGES_NOT_TAKEN = {
    "on_object_created": {
        ("chalicelib.ingest.ingest_s3", "chalicelib.ingest.hand_off"): "only with sync=True, i.e. POST /ingest",
    },
    "reclaim_debris": {
        ("chalicelib.jobs.service.job_status", "chalicelib.jobs.service._results"): (
            "the retention sweep asks job_status(links=False): it signs no result URL"
        ),
    },
}
BUCKET = "aws_s3_bucket.models.arn"
Node = str  # "module.function" or "module.Class.method"


def _modules() -> dict[str, ast.Module]:
    files = [ROOT / "app.py", *sorted((ROOT / PACKAGE).rglob("*.py"))]
    out = {}
    for path in files:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = ast.parse(path.read_text(), str(path))
    return out


def _imports(module: str, tree: ast.Module, modules: dict[str, ast.Module]) -> dict[str, str]:
    """Local name -> the chalicelib module or "module.name" it stands for."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import inside the package
                base = ".".join(module.split(".")[: -node.level] + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                names[alias.asname or alias.name] = target if target in modules else f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = alias.name
    return names


def _definitions(module: str, tree: ast.Module) -> dict[Node, ast.AST]:
    defs: dict[Node, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defs[f"{module}.{node.name}"] = node
        elif isinstance(node, ast.ClassDef):
            defs[f"{module}.{node.name}"] = node
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    defs[f"{module}.{node.name}.{item.name}"] = item
    return defs


def _is_client(expr: ast.AST, clients: set[str]) -> bool:
    """``expr`` is the S3 client: a name bound from a client factory, or a factory call."""
    if isinstance(expr, ast.Name):
        return expr.id in clients
    if isinstance(expr, ast.Call):
        func = expr.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        return name in CLIENT_FACTORIES
    return False


def s3_calls(body: ast.AST) -> set[str]:
    """Methods called on the S3 client inside ``body`` (how chalicelib/s3.py calls boto3)."""
    clients: set[str] = set()
    for node in ast.walk(body):
        if isinstance(node, ast.Assign) and _is_client(node.value, set()):
            for target in node.targets:
                first = target.elts[0] if isinstance(target, ast.Tuple) else target
                if isinstance(first, ast.Name):
                    clients.add(first.id)
    return {
        node.func.attr
        for node in ast.walk(body)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_client(node.func.value, clients)
    }


class CallGraph:
    """Which function refers to which (calls and references, e.g. callbacks), across app.py and chalicelib."""

    def __init__(self, modules: dict[str, ast.Module]) -> None:
        self.defs: dict[Node, ast.AST] = {}
        for module, tree in modules.items():
            self.defs.update(_definitions(module, tree))
        self.edges: dict[Node, set[Node]] = {}
        self.calls: dict[Node, set[str]] = {}
        for module, tree in modules.items():
            imports = _imports(module, tree, modules)
            for node, body in _definitions(module, tree).items():
                if isinstance(body, ast.ClassDef):
                    continue
                # The S3 client lives in chalicelib/s3.py only (checked below);
                # other modules' clients (jobs' SQS) are not S3's.
                self.calls[node] = s3_calls(body) if module == f"{PACKAGE}.s3" else set()
                self.edges[node] = self._refs(module, node, body, imports, modules)
            top = ast.Module(
                body=[n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))],
                type_ignores=[],
            )
            self.edges[f"{module}.<module>"] = self._refs(module, "", top, imports, modules)

    def _expand(self, node: Node) -> set[Node]:
        """A class stands for all its methods (it is constructed, then used)."""
        if isinstance(self.defs.get(node), ast.ClassDef):
            return {n for n in self.defs if n.startswith(node + ".")}
        return {node} if node in self.defs else set()

    def _refs(self, module: str, owner: str, body: ast.AST, imports: dict[str, str], modules) -> set[Node]:
        cls = owner.rsplit(".", 1)[0] if owner.count(".") > module.count(".") + 1 else None
        out: set[Node] = set()
        for node in ast.walk(body):
            if isinstance(node, ast.Name):
                target = imports.get(node.id, f"{module}.{node.id}")
                out |= self._expand(target)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "self" and cls:
                    out |= self._expand(f"{cls}.{node.attr}")
                elif imports.get(node.value.id) in modules:
                    out |= self._expand(f"{imports[node.value.id]}.{node.attr}")
        out.discard(owner)
        return out

    def reachable(self, roots: set[Node], not_taken: dict[tuple[Node, Node], str]) -> set[Node]:
        seen, todo = set(), list(roots)
        while todo:
            node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            todo += [n for n in self.edges.get(node, ()) if (node, n) not in not_taken]
        return seen


def lambda_handlers(app: ast.Module) -> dict[str, set[Node]]:
    """Chalice function name -> its handlers in app.py: every route is ``api_handler``;
    an event handler is a function named after itself."""
    functions: dict[str, set[Node]] = {}
    for node in app.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            func = dec.func if isinstance(dec, ast.Call) else None
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "app":
                kind = func.attr
                name = "api_handler" if kind == "route" else node.name
                functions.setdefault(name, set()).add(f"app.{node.name}")
    return functions


@pytest.fixture(scope="module")
def graph() -> CallGraph:
    return CallGraph(_modules())


def test_every_s3_call_of_the_code_is_in_the_modules_list(graph):
    called = set().union(*graph.calls.values())
    assert called, "the scan found no S3 call at all: it no longer matches how chalicelib/s3.py calls boto3"
    missing = called - set(s3.IAM_ACTIONS)
    assert not missing, f"S3 calls without IAM actions in chalicelib/s3.py IAM_ACTIONS: {sorted(missing)}"
    stale = set(s3.IAM_ACTIONS) - called
    assert not stale, f"IAM_ACTIONS lists methods the code no longer calls: {sorted(stale)}"
    assert s3.SIGNED_FOR_CLIENTS <= set(s3.IAM_ACTIONS)
    # No second S3 client that the scan would not see. The jobs queue makes
    # the one SQS client (it names the service; the scan of S3 calls skips it).
    for module, tree in _modules().items():
        if module == "chalicelib.jobs.queue":
            services = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in ("sqs", "s3")}
            assert services == {"sqs"}, (module, services)
        elif module != "chalicelib.s3":
            imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
            assert not imported & {"boto3", "botocore"}, f"{module} makes its own AWS client"


def test_the_scan_sees_a_new_call():
    """The scanner itself: a call on a bounded or plain client, assigned or direct."""
    source = (
        "def f():\n"
        "    s3, cut = bounded_client()\n"
        "    s3.delete_objects(Bucket='b')\n"
        "    client().list_objects_v2(Bucket='b')\n"
        "    other.get_object()\n"
    )
    assert s3_calls(ast.parse(source)) == {"delete_objects", "list_objects_v2"}


def _policy(text: str, name: str, docs: dict[str, str]) -> list[dict]:
    body = block(docs[text], rf'data "aws_iam_policy_document" "{name}"')
    out = statements(body)
    for source in re.findall(r"data\.aws_iam_policy_document\.(\w+)\.json", body):
        out += _policy(text, source, docs)
    return out


def _role_policies(text: str, role: str) -> list[str]:
    """The policy documents of every ``aws_iam_role_policy`` attached to ``role``."""
    found = []
    for body in re.findall(r'^resource "aws_iam_role_policy" "\w+" \{\n(.*?)^\}', text, re.M | re.S):
        if re.search(rf"^\s*role\s*=\s*aws_iam_role\.{role}\.id\s*$", body, re.M):
            found += re.findall(r"policy\s*=\s*data\.aws_iam_policy_document\.(\w+)\.json", body)
    assert found, f"no role policy for aws_iam_role.{role}"
    return found


def _allowed_on_bucket(policy: list[dict]) -> set[str]:
    """Actions allowed on the models bucket or its objects (Deny statements subtract)."""
    allowed = {
        a
        for st in policy
        if st["effect"] == "Allow" and any(BUCKET in r for r in st["resources"])
        for a in st["actions"]
    }
    denied = {a for st in policy if st["effect"] == "Deny" and not st["condition"].get("test") for a in st["actions"]}
    return allowed - denied


def test_each_function_s_role_and_the_s3_endpoint_allow_what_it_calls(graph, packaged_stack):
    template = json.loads((packaged_stack / "chalice.tf.json").read_text())
    roles = {
        name: re.fullmatch(r"\$\{aws_iam_role\.(\w+)\.arn\}", f["role"]).group(1)
        for name, f in template["resource"]["aws_lambda_function"].items()
    }
    iam = "\n".join((packaged_stack / f).read_text() for f in ("iam.tf", "jobs.tf"))
    docs = {"iam": iam, "network": (packaged_stack / "network.tf").read_text()}
    endpoint = _allowed_on_bucket(_policy("network", "s3_endpoint", docs))
    handlers = lambda_handlers(_modules()["app"])
    assert set(handlers) == set(roles), (set(handlers), set(roles))
    reached_any: set[str] = set()
    problems = []
    for function, roots in sorted(handlers.items()):
        nodes = graph.reachable(roots | {"app.<module>"}, EDGES_NOT_TAKEN.get(function, {}))
        methods = set().union(*(graph.calls.get(n, set()) for n in nodes))
        reached_any |= methods
        granted = _allowed_on_bucket(
            [st for d in _role_policies(iam, roles[function]) for st in _policy("iam", d, docs)]
        )
        for method in sorted(methods):
            for action in s3.IAM_ACTIONS[method]:
                if action not in granted:
                    problems.append(f"{function} calls {method}: role {roles[function]} lacks {action}")
                if method not in s3.SIGNED_FOR_CLIENTS and action not in endpoint:
                    problems.append(f"{function} calls {method}: the S3 gateway endpoint policy lacks {action}")
    assert not problems, "\n".join(problems)
    # The graph really reaches the calls (DELETE, ingest, predict, uploads).
    assert reached_any == set(s3.IAM_ACTIONS), reached_any


def test_endpoint_policy_stays_on_this_bucket(packaged_stack):
    policy = statements(
        block((packaged_stack / "network.tf").read_text(), r'data "aws_iam_policy_document" "s3_endpoint"')
    )
    for st in policy:
        assert all(BUCKET in r for r in st["resources"]), st
        assert all(a.startswith("s3:") and "*" not in a for a in st["actions"]), st
