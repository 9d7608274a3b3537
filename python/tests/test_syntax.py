"""The package is Python 3.7 code: no walrus, no match, no positional-only
parameters, no subscripted builtins (list[int]) outside annotations."""
import ast
import os
import sys
import unittest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "effect_ipc")
BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "type"}


@unittest.skipIf(sys.version_info < (3, 9), "older Pythons import the package themselves (its tests ran on them)")
class Python37(unittest.TestCase):
    def test_every_module_parses_as_python_3_7(self):
        names = sorted(n for n in os.listdir(ROOT) if n.endswith(".py"))
        self.assertIn("rpc.py", names)
        for name in names:
            with open(os.path.join(ROOT, name), encoding="utf-8") as f:
                source = f.read()
            tree = ast.parse(source, name, feature_version=(3, 7))
            for node in ast.walk(tree):
                self.assertNotIsInstance(node, ast.NamedExpr, "%s:%d walrus" % (name, getattr(node, "lineno", 0)))
                if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
                    self.assertNotIn(node.value.id, BUILTINS, "%s:%d %s[...]" % (name, node.lineno, node.value.id))
                if isinstance(node, (ast.FunctionDef, ast.Lambda)):
                    self.assertEqual(getattr(node.args, "posonlyargs", []), [], "%s: positional-only" % name)

    def test_a_walrus_is_caught(self):
        with self.assertRaises(SyntaxError):
            ast.parse("if (n := 1): pass", feature_version=(3, 7))


if __name__ == "__main__":
    unittest.main()


class Imports(unittest.TestCase):
    def test_import_effect_ipc_reaches_every_module_the_readme_names(self):
        # a fresh interpreter: `import effect_ipc` alone, then effect_ipc.ipckit and effect_ipc.log as the
        # README writes them (they were not imported by the package, so an AttributeError)
        import subprocess
        code = "import effect_ipc; effect_ipc.ipckit.IpckitChannel; effect_ipc.log; effect_ipc.rpc.RpcClient; print('ok')"
        env = dict(os.environ, PYTHONPATH=os.path.dirname(ROOT))
        out = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(out.stdout.decode().strip(), "ok", out.stderr.decode())
