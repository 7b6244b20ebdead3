"""``import ray`` giving kit: ``python -m kit.ray``, the import hook, Ray's fixtures.

Each test runs its program in a new process (the alias changes what ``import ray`` means
for the whole process, and this one may have imported the real Ray already).
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.cluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_RAY = importlib.util.find_spec("ray") is not None


def run(args, cwd, stdin=None, timeout=120):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "scripts")]))
    env.pop("KIT_RAY_ALIAS", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, input=stdin, capture_output=True, text=True,
        timeout=timeout, env=env,
    )  # fmt: skip


def test_a_ray_program_runs_unmodified(tmp_path):
    (tmp_path / "helper.py").write_text(
        "import ray\n\ndef engine():\n    return ray.__name__\n"  # imported by the workers
    )
    (tmp_path / "prog.py").write_text(
        textwrap.dedent(
            """
            import sys
            import ray
            from ray.util import ActorPool
            from ray.util.queue import Queue
            from ray.exceptions import RayActorError, RayTaskError
            import helper

            ray.init(num_cpus=2)

            @ray.remote
            def where():
                return helper.engine()

            @ray.remote
            class Doubler:
                def double(self, x):
                    return 2 * x

            pool = ActorPool([Doubler.remote(), Doubler.remote()])
            q = Queue()
            q.put(7)
            print("worker", ray.get(where.remote()))
            print("pool", list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3])))
            print("queue", q.get(timeout=10), "argv", sys.argv[1:])
            ray.shutdown()
            """
        )
    )
    p = run(["-m", "kit.ray", "prog.py", "x", "y"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "worker kit.ray" in p.stdout  # the workers' `import ray` is kit too
    assert "pool [2, 4, 6]" in p.stdout
    assert "queue 7 argv ['x', 'y']" in p.stdout
    shadow = [line for line in p.stderr.splitlines() if "is not used" in line]
    assert len(shadow) == (1 if REAL_RAY else 0), p.stderr  # says so, once, when it shadows


def test_code_and_stdin_forms(tmp_path):
    p = run(["-m", "kit.ray", "-c", "import ray, ray.actor; print(ray.actor.exit_actor)"], tmp_path)
    assert p.returncode == 0 and "exit_actor" in p.stdout, p.stderr
    p = run(["-m", "kit.ray", "-"], tmp_path, stdin="import ray.types\nprint(ray.ObjectID)\n")
    assert p.returncode == 0 and "ObjectRef" in p.stdout, p.stderr


def test_what_kit_lacks_is_named_not_taken_from_real_ray(tmp_path):
    p = run(["-m", "kit.ray", "-c", "import ray.data"], tmp_path)
    assert p.returncode == 1
    assert "ModuleNotFoundError" in p.stderr and "README" in p.stderr
    p = run(["-m", "kit.ray", "-c", "import ray; ray.util.placement_group"], tmp_path)
    assert "placement groups" in p.stderr


@pytest.mark.skipif(not REAL_RAY, reason="needs the real Ray installed (the engines extra)")
def test_refuses_when_the_real_ray_is_already_imported(tmp_path):
    p = run(["-c", "import ray, kit; kit.install_ray_alias()"], tmp_path)
    assert p.returncode == 1
    assert "ImportError" in p.stderr and "already imported" in p.stderr


def test_kit_as_ray_magic(tmp_path):
    code = textwrap.dedent(
        """
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "kit")
        shell.run_line_magic("kit_as_ray", "")
        shell.run_cell("import ray; ray.init(num_cpus=1); print(ray.get(ray.put(41)) + 1)")
        shell.run_cell("from ray.util import ActorPool; print(ActorPool.__module__)")
        shell.run_cell("ray.shutdown()")
        """
    )
    p = run(["-c", code], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "42" in p.stdout and "kit.ray.util.actor_pool" in p.stdout, p.stdout + p.stderr


def test_pytest_through_the_alias_with_rays_fixtures(tmp_path):
    (tmp_path / "test_mine.py").write_text(
        textwrap.dedent(
            """
            import pytest
            import ray
            from ray._common.test_utils import SignalActor, wait_for_condition

            def test_signal(ray_start_regular):
                signal = SignalActor.remote()

                @ray.remote
                def waits(s):
                    return ray.get(s.wait.remote())

                ref = waits.remote(signal)
                wait_for_condition(lambda: ray.get(signal.cur_num_waiters.remote()) == 1)
                ray.get(signal.send.remote())
                assert ray.get(ref, timeout=30) is None

            def test_cluster(ray_start_cluster):
                cluster = ray_start_cluster
                cluster.add_node(num_cpus=0)
                ray.init(address=cluster.address)
                node = cluster.add_node(num_cpus=1, resources={"extra": 1})

                @ray.remote(resources={"extra": 1})
                def where():
                    return ray.get_runtime_context().get_node_id()

                assert ray.get(where.remote(), timeout=30) == node.node_id
                cluster.remove_node(node)
                assert len([n for n in ray.nodes() if n["Alive"]]) == 1
            """
        )
    )
    p = run(["-m", "kit.ray", "-m", "pytest", "-p", "ray_fixtures", "-q", "-p",
             "no:cacheprovider", "test_mine.py"], tmp_path, timeout=240)  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:]
    assert "2 passed" in p.stdout


def test_rays_own_tests_short(tmp_path):
    """scripts/ray_tests.py --short: a few of Ray's own tests, unmodified, pass on kit."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import ray_tests

    why = ray_tests.short_missing()
    if why:
        pytest.skip(why)
    p = run([os.path.join(ROOT, "scripts", "ray_tests.py"), "--short"], tmp_path, timeout=400)
    assert p.returncode == 0, p.stdout + p.stderr
