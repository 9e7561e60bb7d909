"""A submitted notebook sealed off in a sandbox, and the plain data that crosses its wall.

Used by :mod:`course_lib.grading` (``grade``, ``selfcheck``). One submission, one sandbox:

* **The wall.** On Linux, Debian's ``bubblewrap`` (``bwrap``) starts the notebook's Python
  in new user, PID, network, IPC and UTS namespaces, with ``--die-with-parent`` and a new
  session: it sees a read-only system (``/usr``, a few files of ``/etc``), the Python
  environment and ``course_lib`` (read-only), a private ``/tmp`` of limited size, and
  nothing else -- not the tests, the autograder, the other submissions, the instructor's
  files or environment variables. Its network is loopback only, its processes are
  invisible outside and killed with it. When the grader runs as root, the sandbox runs as
  ``nobody`` (so that the process limit counts).
* **The limits** (``prlimit``, per process, set inside the sandbox): memory (writable
  memory, ``RLIMIT_DATA``), CPU seconds, processes, file size, no core files; and, counted
  by the grader, the bytes of output and the wall time.
* **What crosses.** The grader sends the notebook's code cells, then asks for the values
  of names and calls the student's functions on test inputs. Everything crosses as plain
  data on a pipe, one JSON line per message: numbers, strings, lists, tuples, dicts, sets,
  NumPy arrays and scalars (as ``.npy`` bytes, read with ``allow_pickle=False``), pandas
  tables, and Keras graphs built from Keras' own layers (their config and weights). Never
  a pickle, never an object with methods of the student's making. The tests, the
  expected values and the comparisons stay in the grader.

The sandbox side is this module run as a program (``python -m course_lib.sandbox``): it
executes the cells with IPython, one cell-time limit each, then answers requests.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import dataclasses
import io
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROTOCOL = 1
GiB, MiB = 1024**3, 1024**2


@dataclasses.dataclass
class Limits:
    """What one submission may use. Memory, CPU, processes and file size are per process."""

    cell_timeout: float = 300  # seconds per notebook cell (and per call of a student function)
    timeout: float = 1800  # seconds for the whole submission: notebook and tests
    memory: int = 4 * GiB  # writable memory per process (RLIMIT_DATA)
    cpu: int | None = None  # CPU seconds per process; None: twice ``timeout``
    # processes and threads in the sandbox (RLIMIT_NPROC); TensorFlow starts threads per core
    processes: int = dataclasses.field(default_factory=lambda: max(256, 4 * (os.cpu_count() or 1)))
    output: int = 10 * MiB  # bytes the notebook may print (stdout and stderr together)
    file_size: int = 256 * MiB  # largest file it may write (RLIMIT_FSIZE)
    tmp_size: int = 512 * MiB  # its private /tmp and /dev/shm, each
    answer_size: int = 32 * MiB  # largest answer (one JSON line) it may send back

    @property
    def cpu_seconds(self) -> int:
        return int(self.cpu if self.cpu is not None else 2 * self.timeout)

    def check(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"limit {field.name} must be a positive number, got {value!r}.")


def _size(n: float) -> str:
    return f"{n / GiB:g} GiB" if n >= GiB else f"{n / MiB:g} MB"


# --------------------------------------------------------------------------- plain data

_TAGS = ("__tuple__", "__dict__", "__set__", "__ndarray__", "__npscalar__", "__complex__", "__bytes__",
         "__dataframe__", "__series__", "__keras_input__", "__keras_output__")
_MAX_DEPTH = 64


class NotPlainData(TypeError):
    """A value that cannot cross the sandbox's wall (not numbers, strings, arrays, ...)."""


class _Codec:
    """Turns values into JSON-ready plain data and back, on one side of the wall.

    ``side`` is ``"grader"`` or ``"sandbox"``: the grader sends Keras input tensors and
    receives Keras graphs; the sandbox the other way round. Decoding accepts nothing but
    the tags above, so a reply can never produce an object the student defined.
    """

    def __init__(self, side: str):
        self.side = side
        self.keras_inputs: list = []  # grader: tensors sent; sandbox: the Inputs made for them
        self.keras_outputs: list = []  # sandbox: tensors to send back; grader: their rebuilds

    # encode -----------------------------------------------------------------
    def encode(self, obj, depth=0):
        if depth > _MAX_DEPTH:
            raise NotPlainData("nested too deeply")
        enc = lambda o: self.encode(o, depth + 1)  # noqa: E731
        if obj is None or type(obj) in (bool, str):
            return obj
        if isinstance(obj, bool):
            return bool(obj)
        if isinstance(obj, int):
            return int.__index__(obj)
        if isinstance(obj, float):
            return float.__float__(obj)
        if isinstance(obj, str):
            return str.__str__(obj)
        if isinstance(obj, complex):
            return {"__complex__": [obj.real, obj.imag]}
        if isinstance(obj, (bytes, bytearray)):
            return {"__bytes__": base64.b64encode(bytes(obj)).decode()}
        if isinstance(obj, list):
            return [enc(v) for v in obj]
        if isinstance(obj, tuple):
            return {"__tuple__": [enc(v) for v in obj]}
        if isinstance(obj, (set, frozenset)):
            return {"__set__": [enc(v) for v in obj]}
        if isinstance(obj, dict):
            if all(type(k) is str and not k.startswith("__") for k in obj):
                return {k: enc(v) for k, v in obj.items()}
            return {"__dict__": [[enc(k), enc(v)] for k, v in obj.items()]}
        kind = _kind(obj)
        if kind == "numpy-array":
            return {"__ndarray__": _npy(obj)}
        if kind == "numpy-scalar":
            import numpy as np

            return {"__npscalar__": _npy(np.asarray(obj))}
        if kind == "dataframe":
            cols = list(obj.columns)
            return {"__dataframe__": {"columns": enc(cols), "index": enc(obj.index.to_numpy()),
                                      "data": [enc(obj[c].to_numpy()) for c in cols]}}
        if kind == "series":
            return {"__series__": {"name": enc(obj.name), "index": enc(obj.index.to_numpy()),
                                   "data": enc(obj.to_numpy())}}
        if kind == "keras-tensor":
            if self.side == "grader":
                self.keras_inputs.append(obj)
                return {"__keras_input__": {"shape": list(obj.shape), "dtype": str(obj.dtype),
                                            "index": len(self.keras_inputs) - 1}}
            self.keras_outputs.append(obj)
            return {"__keras_output__": len(self.keras_outputs) - 1}
        if kind == "array-like":  # a TensorFlow tensor, a Keras variable: its values
            import numpy as np

            return {"__ndarray__": _npy(np.asarray(obj))}
        raise NotPlainData(f"a {type(obj).__module__}.{type(obj).__qualname__} is not plain data")

    # decode -----------------------------------------------------------------
    def decode(self, data, depth=0):
        if depth > _MAX_DEPTH:
            raise NotPlainData("nested too deeply")
        dec = lambda o: self.decode(o, depth + 1)  # noqa: E731
        if data is None or type(data) in (bool, int, float, str):
            return data
        if type(data) is list:
            return [dec(v) for v in data]
        if type(data) is not dict:
            raise NotPlainData(f"unexpected {type(data).__name__}")
        if len(data) == 1 and next(iter(data)) in _TAGS:
            (tag, body), = data.items()
            return self._decode_tag(tag, body, dec)
        if any(k.startswith("__") for k in data):
            raise NotPlainData("unknown tag")
        return {k: dec(v) for k, v in data.items()}

    def _decode_tag(self, tag, body, dec):
        if tag == "__tuple__":
            return tuple(dec(v) for v in _expect(body, list))
        if tag == "__set__":
            return {dec(v) for v in _expect(body, list)}
        if tag == "__dict__":
            out = {}
            for pair in _expect(body, list):
                key, value = _expect(pair, list, 2)
                out[dec(key)] = dec(value)
            return out
        if tag == "__complex__":
            re_, im = _expect(body, list, 2)
            return complex(float(re_), float(im))
        if tag == "__bytes__":
            return base64.b64decode(_expect(body, str), validate=True)
        if tag == "__ndarray__":
            return _from_npy(_expect(body, str))
        if tag == "__npscalar__":
            arr = _from_npy(_expect(body, str))
            if arr.ndim != 0:
                raise NotPlainData("a NumPy scalar must have no dimensions")
            return arr[()]
        if tag in ("__dataframe__", "__series__"):
            import pandas as pd

            body = _expect(body, dict)
            index = dec(body.get("index"))
            if tag == "__series__":
                return pd.Series(dec(body.get("data")), index=index, name=dec(body.get("name")))
            cols, data = dec(body.get("columns")), dec(body.get("data"))
            if not (isinstance(cols, list) and isinstance(data, list) and len(cols) == len(data)):
                raise NotPlainData("a table needs as many columns as names")
            return pd.DataFrame(dict(zip(cols, data)), index=index)
        if tag == "__keras_input__" and self.side == "sandbox":
            import keras

            body = _expect(body, dict)
            shape = [None if s is None else int(s) for s in _expect(body.get("shape"), list)]
            tensor = keras.Input(batch_shape=tuple(shape), dtype=str(body.get("dtype", "float32")))
            self.keras_inputs.append(tensor)
            return tensor
        if tag == "__keras_output__" and self.side == "grader":
            index = _expect(body, int)
            if not 0 <= index < len(self.keras_outputs):
                raise NotPlainData("a Keras output that the answer's graph does not have")
            return self.keras_outputs[index]
        raise NotPlainData(f"tag {tag} is not accepted here")


def _expect(value, kind, length=None):
    if type(value) is not kind or (length is not None and len(value) != length):
        raise NotPlainData(f"malformed plain data (expected {kind.__name__})")
    return value


def _kind(obj) -> str:
    mod = type(obj).__module__ or ""
    name = type(obj).__name__
    if "numpy" in sys.modules:
        import numpy as np

        if isinstance(obj, np.ndarray):
            return "numpy-array"
        if isinstance(obj, np.generic):
            return "numpy-scalar"
    if "pandas" in sys.modules:
        import pandas as pd

        if isinstance(obj, pd.DataFrame):
            return "dataframe"
        if isinstance(obj, pd.Series):
            return "series"
    if name == "KerasTensor" and mod.startswith("keras"):
        return "keras-tensor"
    if hasattr(type(obj), "__array__") and not isinstance(obj, type):
        return "array-like"
    return "other"


def _npy(arr) -> str:
    import numpy as np

    arr = np.array(arr, subok=False, copy=True)  # a plain ndarray, whatever subclass came in
    if arr.dtype.kind in "OV":
        raise NotPlainData(f"an array of dtype {arr.dtype} (objects) is not plain data")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode()


def _from_npy(text: str):
    import numpy as np

    arr = np.lib.format.read_array(io.BytesIO(base64.b64decode(text, validate=True)), allow_pickle=False)
    if type(arr) is not np.ndarray or arr.dtype.kind in "OV":
        raise NotPlainData("not a plain array")
    return arr


# Keras graphs come back as the config of a functional model and its weights, rebuilt in
# the grader from Keras' own classes only (no Lambda layer, no class of the student's).
_KERAS_REFUSED = {"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"}
# Keras' serialization of values inside a config (a tensor in a layer call's arguments, an
# array, a slice): rebuilt from numbers by Keras. ("__lambda__", Python code, is not here.)
_KERAS_VALUES = {"__keras_tensor__", "__tensor__", "__numpy__", "__ellipsis__", "__slice__", "__bytes__"}


def _check_keras_config(cfg, depth=0) -> None:
    if depth > 200:
        raise NotPlainData("Keras config nested too deeply")
    if isinstance(cfg, dict):
        if "class_name" in cfg:
            module, name = cfg.get("module"), cfg.get("class_name")
            registered = cfg.get("registered_name")
            keras_value = module is None and name in _KERAS_VALUES
            if not keras_value and (
                    not (isinstance(module, str) and (module == "keras" or module.startswith("keras.")))
                    or name in _KERAS_REFUSED or (isinstance(registered, str) and ">" in registered)):
                raise NotPlainData(f"the answer's Keras graph uses {module}.{name}, not one of Keras' own layers")
        for value in cfg.values():
            _check_keras_config(value, depth + 1)
    elif isinstance(cfg, list):
        for value in cfg:
            _check_keras_config(value, depth + 1)


def _keras_graph_out(codec: _Codec) -> dict:
    """Sandbox side: the functional model from this call's Keras inputs to its outputs."""
    import keras

    model = keras.Model(inputs=list(codec.keras_inputs), outputs=list(codec.keras_outputs))
    return {"config": keras.saving.serialize_keras_object(model),
            "weights": [codec.encode(w) for w in model.get_weights()]}


def _keras_graph_in(codec: _Codec, graph) -> None:
    """Grader side: rebuild the student's graph on the tensors the test passed in."""
    import keras

    graph = _expect(graph, dict)
    config = _expect(graph.get("config"), dict)
    _check_keras_config(config)
    model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    if not isinstance(model, keras.Model):
        raise NotPlainData("the answer's Keras graph is not a functional model")
    model.set_weights([codec.decode(w) for w in _expect(graph.get("weights"), list)])
    clone = keras.models.clone_model(model, input_tensors=list(codec.keras_inputs),
                                     clone_function=lambda layer: layer)
    codec.keras_outputs = list(clone.outputs)


# --------------------------------------------------------------------------- the wall

_BWRAP_FLAGS: set[str] | None = None
_AVAILABLE: tuple[bool, str] | None = None


def _bwrap_flags(bwrap: str) -> set[str]:
    global _BWRAP_FLAGS
    if _BWRAP_FLAGS is None:
        try:
            text = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            text = ""
        _BWRAP_FLAGS = {w for w in text.split() if w.startswith("--")}
    return _BWRAP_FLAGS


_PYTHON_DIRS: list[Path] | None = None


def _python_dirs() -> list[Path]:
    """The directories the notebook's Python needs: its prefixes and the package folders
    of a fresh interpreter (not this process's sys.path, which may hold the current folder,
    PYTHONPATH or a test's folders). A folder holding course_lib (a repository on the path)
    is never shared whole: only course_lib is."""
    global _PYTHON_DIRS
    if _PYTHON_DIRS is None:
        try:
            fresh = json.loads(subprocess.run(
                [sys.executable, "-E", "-c", "import json, sys; print(json.dumps(sys.path))"],
                capture_output=True, text=True, timeout=60, cwd="/").stdout)
        except (OSError, ValueError, subprocess.SubprocessError):
            fresh = []
        dirs: list[Path] = []
        course = _course_lib_dir()
        for d in [sys.base_prefix, sys.prefix, sys.exec_prefix, *fresh]:
            if not d or not os.path.isabs(d):
                continue  # '' is the current folder: never shared
            p = Path(d).resolve()
            if p.is_file():  # a zip of the standard library
                p = p.parent
            if not p.is_dir() or p == Path("/") or p in course.parents:
                continue
            if not any(p == q or q in p.parents for q in dirs):
                dirs = [q for q in dirs if p not in q.parents] + [p]
        _PYTHON_DIRS = dirs
    return list(_PYTHON_DIRS)


def _course_lib_dir() -> Path:
    return Path(__file__).resolve().parent


def shared_paths() -> list[Path]:
    """Every host path the sandbox can read (besides the system): Python and course_lib."""
    system = [Path(p) for p in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")]
    extra = [p for p in _python_dirs() + [_course_lib_dir()]
             if not any(p == s or s in p.parents for s in system)]
    out = []
    for p in extra:
        if not any(p == q or q in p.parents for q in out):
            out = [q for q in out if p not in q.parents] + [p]
    return out


def check_private(paths) -> None:
    """Raise ValueError if the sandbox would see any of ``paths`` (submissions, tests, ...)."""
    shared = shared_paths()
    for path in paths:
        path = Path(path).resolve()
        for s in shared:
            if path == s or s in path.parents:
                raise ValueError(
                    f"the sandbox shares {s} (the Python environment or course_lib), which holds {path}: "
                    "keep submissions, autograders and grades outside it.")


_STAGE: str | None = None


def _stage_dir() -> str:
    """An empty folder other users can reach, holding one mount point per shared path."""
    global _STAGE
    if _STAGE is None or not os.path.isdir(_STAGE):
        import atexit

        _STAGE = tempfile.mkdtemp(prefix="grade-stage-")
        os.chmod(_STAGE, 0o755)
        atexit.register(shutil.rmtree, _STAGE, True)
    return _STAGE


def _bwrap_argv(limits: Limits, bwrap: str) -> list[str]:
    """The command line that seals off the command appended to it."""
    flags = _bwrap_flags(bwrap)
    shared = [(p, p) for p in shared_paths()]  # (where the sandbox reads it from, where it sees it)
    argv = []
    if os.geteuid() == 0 and shutil.which("setpriv") and shutil.which("unshare"):
        # As root the kernel would not count processes (RLIMIT_NPROC) and file modes would not
        # bind, so the sandbox runs as nobody. nobody may not reach a Python in /root: in a
        # private mount namespace, root first binds each shared path onto a mount point in a
        # folder nobody can reach, and bwrap binds it from there back to its own path.
        stage, pairs = _stage_dir(), []
        for i, (p, _) in enumerate(shared):
            point = os.path.join(stage, str(i))
            os.makedirs(point, exist_ok=True)
            pairs += [str(p), point]
        shared = [(Path(os.path.join(stage, str(i))), p) for i, (p, _) in enumerate(shared)]
        script = 'while [ "$1" != "--" ]; do mount --bind "$1" "$2" || exit 97; shift 2; done; shift; exec "$@"'
        argv += [shutil.which("unshare"), "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script,
                 "sh", *pairs, "--", shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"]
    argv += [bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
             "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if "--disable-userns" in flags:
        argv.append("--disable-userns")
    argv += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / name
        if p.is_symlink():
            argv += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            argv += ["--ro-bind", str(p), str(p)]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime",
                 "nsswitch.conf", "passwd", "group", "mime.types"):
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    size = ["--size", str(int(limits.tmp_size))] if "--size" in flags else []
    argv += ["--proc", "/proc", "--dev", "/dev", *size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
             *size, "--tmpfs", "/tmp", "--dir", "/tmp/work", "--dir", "/tmp/home"]
    # Python and course_lib after the private /tmp: a virtual environment under /tmp (a fresh clone's
    # venv, a CI runner's) would otherwise be hidden by the empty tmpfs.
    for source, dest in shared:
        argv += ["--ro-bind", str(source), str(dest)]
    argv += ["--chdir", "/tmp/work", "--remount-ro", "/", "--"]
    return argv


def _prlimit_argv(limits: Limits, processes: bool = True) -> list[str]:
    prlimit = shutil.which("prlimit")
    if not prlimit:
        return []
    cpu = limits.cpu_seconds
    argv = [prlimit, f"--data={int(limits.memory)}", f"--cpu={cpu}:{cpu + 5}",
            f"--fsize={int(limits.file_size)}", "--core=0"]
    if processes:
        argv.append(f"--nproc={int(limits.processes)}")
    return argv + ["--"]


def _env(home: str, extra_path: str = "") -> dict:
    course_parent = str(_course_lib_dir().parent)
    env = {
        "PATH": os.pathsep.join(p for p in [os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": home, "TMPDIR": "/tmp" if home.startswith("/tmp/") else home, "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join(p for p in [extra_path, course_parent] if p),
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "CUDA_VISIBLE_DEVICES": "",
        "COURSE_LIB_PROFILE": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_HOME": f"{home}/.keras",
    }
    return env


def available() -> tuple[bool, str]:
    """(True, "") when bubblewrap and prlimit can seal a notebook off here, else (False, why)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        bwrap = shutil.which("bwrap")
        if sys.platform != "linux":
            _AVAILABLE = (False, "the sandbox needs Linux (bubblewrap)")
        elif not bwrap:
            _AVAILABLE = (False, "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
        elif not shutil.which("prlimit"):
            _AVAILABLE = (False, "prlimit (util-linux) is not installed")
        else:
            try:
                argv = _bwrap_argv(Limits(), bwrap) + _prlimit_argv(Limits()) + [
                    sys.executable, "-c", "import course_lib, os; print('sealed', os.getpid())"]
                run = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=_env("/tmp/home"),
                                     cwd="/")
                ok = run.returncode == 0 and run.stdout.split() == ["sealed", "2"]
                why = "" if ok else f"bubblewrap failed here: {(run.stderr or run.stdout).strip()[-300:]}"
            except (OSError, subprocess.SubprocessError) as exc:
                ok, why = False, f"bubblewrap failed here: {exc}"
            _AVAILABLE = (ok, why)
    return _AVAILABLE


NETWORK_GUARD = '''\
"""Installed by course_lib.sandbox in --unsafe mode: sockets may reach loopback only."""
import errno as _errno, ipaddress as _ip, socket as _socket

def _loopback(host):
    if host in (None, "", "localhost", "localhost.localdomain"):
        return True
    try:
        return _ip.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False

def _refuse(what):
    raise OSError(_errno.ENETUNREACH, f"network access is disabled while grading ({what})")

def _wrap(name):
    original = getattr(_socket.socket, name)
    def guarded(self, address, *args):
        target = args[-1] if name == "sendto" and args else address
        if self.family in (_socket.AF_INET, _socket.AF_INET6) and not _loopback(target[0]):
            _refuse(f"{name} {target[0]}")
        return original(self, address, *args)
    setattr(_socket.socket, name, guarded)

for _name in ("connect", "connect_ex", "sendto"):
    _wrap(_name)

_getaddrinfo = _socket.getaddrinfo
def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _loopback(host):
        _refuse(f"name lookup {host}")
    return _getaddrinfo(host, *args, **kwargs)
_socket.getaddrinfo = _guarded_getaddrinfo
'''


class Stopped(BaseException):
    """The sandbox is gone (limit, crash, time): every later request fails with this.

    A BaseException, so that a test's ``except Exception`` cannot turn it into a pass.
    """


class StudentError(Exception):
    """A student's function raised an exception that is not one of Python's built-in ones."""


class Sandbox:
    """One sealed-off Python running one notebook; the grader's end of the pipe.

    ``with Sandbox(limits) as box: box.run(cells); box.get(name); box.call(name, args, kwargs)``.
    ``unsafe=True`` runs the same program without bubblewrap (own session, loopback-only
    guard, prlimit when installed): for notebooks you trust only.
    """

    def __init__(self, limits: Limits | None = None, unsafe: bool = False):
        self.limits = limits or Limits()
        self.limits.check()
        self.unsafe = unsafe
        self.stopped: str | None = None  # why the sandbox ended early, for the grade's reason
        self.output_bytes = 0
        self.cpu_seconds = 0.0  # CPU time the notebook's Python reported at its end (0 if it did not)
        self.proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._out = bytearray()
        self._deadline = 0.0
        self._cpu_used = 0.0
        self._early: bytearray | None = None

    # life cycle -------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self) -> None:
        harness = [sys.executable, "-B", "-s", "-m", "course_lib.sandbox"]
        if self.unsafe:
            self._tmp = tempfile.TemporaryDirectory(prefix="grade-unsafe-")
            guard = Path(self._tmp.name) / "guard"
            guard.mkdir()
            (guard / "sitecustomize.py").write_text(NETWORK_GUARD)
            work = Path(self._tmp.name) / "work"
            work.mkdir()
            argv = _prlimit_argv(self.limits, processes=False) + harness
            env, cwd = _env(str(work), str(guard)), str(work)
            global _LIBC
            if _LIBC is None and sys.platform == "linux":
                with contextlib.suppress(OSError):
                    import ctypes

                    _LIBC = ctypes.CDLL(None)  # loaded here: the child may not import after fork
        else:
            ok, why = available()
            if not ok:
                raise RuntimeError(f"no sandbox: {why}")
            argv = _bwrap_argv(self.limits, shutil.which("bwrap")) + _prlimit_argv(self.limits) + harness
            env, cwd = _env("/tmp/home"), "/"
        self._deadline = time.monotonic() + self.limits.timeout
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, cwd=cwd, start_new_session=True,
                                     preexec_fn=_die_with_parent if self.unsafe else None)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            os.set_blocking(f.fileno(), False)
        self._early = bytearray()  # what the sandbox printed before any student code ran
        try:
            hello = self._receive(min(self._deadline, time.monotonic() + max(60.0, self.limits.cell_timeout)))
        except (TimeoutError, EOFError, Stopped):
            hello = {}
        early, self._early = bytes(self._early), None
        if hello.get("hello") != PROTOCOL:
            self.close()
            raise RuntimeError(f"the sandbox did not start: {early.decode(errors='replace').strip()[-300:]}")

    def close(self) -> None:
        """Kill everything the notebook started and wait for it."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.returncode is None and not self.unsafe and not self.stopped:
            # Ask the notebook's Python to end: bwrap then ends, its PID namespace with all
            # that is left in it, and its CPU time is counted (killed after 2 s anyway).
            self.proc = proc
            with contextlib.suppress(Exception, Stopped):
                self._send({"op": "bye"}, time.monotonic() + 2)
                cpu = self._receive(time.monotonic() + 2).get("cpu")
                if isinstance(cpu, (int, float)) and cpu >= 0:
                    self.cpu_seconds = float(cpu)
            self.proc = None
            self._reap(proc, timeout=2)
        else:
            if proc.returncode is None:
                self._kill(proc)
            self._reap(proc)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _kill(self, proc) -> None:
        if self.unsafe:  # no PID namespace: the session and every descendant we can still find
            import psutil

            with contextlib.suppress(Exception):
                kids = psutil.Process(proc.pid).children(recursive=True)
                for k in kids:
                    with contextlib.suppress(Exception):
                        k.kill()
            with contextlib.suppress(Exception):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.kill()  # bwrap's PID namespace dies with it, and everything in it

    def _reap(self, proc, timeout: float | None = None) -> None:
        """Wait for the sandbox (killing it after ``timeout`` s) and note its CPU time."""
        for f in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(Exception):
                f.close()
        end = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, 0 if end is None else os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    self._cpu_used = usage.ru_utime + usage.ru_stime
                    return
                if time.monotonic() > end:
                    self._kill(proc)
                    end = None
                else:
                    time.sleep(0.05)
        except ChildProcessError:
            proc.wait()

    def _stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason
        proc = self.proc
        if proc is not None:
            self._kill(proc)

    def _died(self) -> str:
        """Why the sandbox's Python ended, from its exit status (it is reaped here)."""
        proc = self.proc
        self.proc = None
        if proc is None:
            return "the notebook's process is gone"
        self._reap(proc, timeout=5)
        code = proc.returncode
        cpu = self.limits.cpu_seconds
        if code in (128 + signal.SIGXCPU, -signal.SIGXCPU) or (
                code in (137, -signal.SIGKILL) and self._cpu_used >= cpu):  # (CPU time known in --unsafe only)
            return f"stopped: CPU time limit ({cpu} s per process) reached"
        if code in (128 + signal.SIGXFSZ, -signal.SIGXFSZ):
            return f"stopped: file size limit ({_size(self.limits.file_size)}) reached"
        if code is not None and (code < 0 or code > 128):
            sig = -code if code < 0 else code - 128
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            return (f"the notebook's Python process was killed ({name}): it crashed, ran out of memory "
                    f"(limit {_size(self.limits.memory)}) or of CPU time (limit {cpu} s), so nothing after "
                    "that could be graded")
        return (f"the notebook's Python process exited (exit code {code}: os._exit or a crash), "
                "so nothing after that could be graded")

    # messages ---------------------------------------------------------------
    def _send(self, message: dict, deadline: float) -> None:
        data = (json.dumps(message) + "\n").encode()
        fd = self.proc.stdin.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_WRITE)
        sel.register(self.proc.stderr.fileno(), selectors.EVENT_READ)
        try:
            while data:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    raise TimeoutError
                for key, _ in sel.select(timeout):
                    if key.fd == fd:
                        try:
                            n = os.write(fd, data[:65536])
                        except BlockingIOError:
                            continue
                        except (BrokenPipeError, OSError):
                            raise EOFError from None
                        data = data[n:]
                    else:
                        self._drain_output()
        finally:
            sel.close()

    def _drain_output(self) -> bool:
        """Count what the notebook printed; False at end of file."""
        try:
            chunk = os.read(self.proc.stderr.fileno(), 1 << 16)
        except BlockingIOError:
            return True
        except OSError:
            return False
        self.output_bytes += len(chunk)
        if self._early is not None and len(self._early) < 4096:
            self._early += chunk[:4096]
        if self.output_bytes > self.limits.output:
            self._stop(f"stopped: the notebook printed more than {_size(self.limits.output)} (the output limit)")
            raise Stopped(self.stopped)
        return bool(chunk)

    def _receive(self, deadline: float) -> dict:
        """The next message from the sandbox (a JSON object on one line)."""
        out_fd, err_fd = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        sel = selectors.DefaultSelector()
        sel.register(out_fd, selectors.EVENT_READ)
        sel.register(err_fd, selectors.EVENT_READ)
        try:
            while b"\n" not in self._out:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    raise TimeoutError
                events = sel.select(min(timeout, 1.0))
                for key, _ in events:
                    if key.fd == err_fd:
                        if not self._drain_output():
                            sel.unregister(err_fd)
                        continue
                    try:
                        chunk = os.read(out_fd, 1 << 20)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        raise EOFError
                    self._out += chunk
                    if len(self._out) > self.limits.answer_size and b"\n" not in self._out:
                        self._stop(f"stopped: an answer was larger than {_size(self.limits.answer_size)}")
                        raise Stopped(self.stopped)
        finally:
            sel.close()
        line, _, rest = bytes(self._out).partition(b"\n")
        self._out = bytearray(rest)
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            return {"error": "the sandbox sent something that is not a message"}
        return message

    def _request(self, message: dict, timeout: float, what: str) -> dict:
        if self.stopped or self.proc is None:
            raise Stopped(self.stopped or "the notebook's process is gone")
        deadline = min(self._deadline, time.monotonic() + timeout)
        try:
            self._send(message, deadline)
            return self._receive(deadline)
        except TimeoutError:
            if time.monotonic() >= self._deadline - 0.01:
                self._stop(f"stopped: grading took longer than the {self.limits.timeout:g} s limit for one submission")
            else:
                self._stop(f"stopped: {what} ran past the {self.limits.cell_timeout:g} s limit")
        except EOFError:
            self.stopped = self.stopped or self._died()
        raise Stopped(self.stopped)

    # the grader's requests --------------------------------------------------
    def run(self, cells: list[str]) -> list[str]:
        """Execute the notebook's code cells in order; the status of each ("ok", "error",
        "timeout", "memory", "processes", "file size")."""
        reply = self._request({"op": "run", "cells": cells, "cell_timeout": self.limits.cell_timeout},
                              self.limits.timeout, "the notebook")
        statuses = reply.get("cells")
        if not (isinstance(statuses, list) and len(statuses) == len(cells)):
            return ["error"] * len(cells)
        return [s if s in ("ok", "error", "timeout", "memory", "processes", "file size") else "error"
                for s in statuses]

    def get(self, name: str):
        """The notebook's value of ``name``: plain data, a :class:`Function` when it is
        callable, None when it is not defined."""
        reply = self._request({"op": "get", "name": name}, self.limits.cell_timeout + 10, f"reading {name}")
        if reply.get("callable") is True:
            return Function(self, name)
        if reply.get("missing") is True:
            return None
        return self._value(reply, _Codec("grader"))

    def call(self, name: str, args: tuple, kwargs: dict):
        codec = _Codec("grader")
        message = {"op": "call", "name": name, "args": codec.encode(list(args)),
                   "kwargs": codec.encode(dict(kwargs)), "errstate": _errstate()}
        reply = self._request(message, self.limits.cell_timeout + 10, f"a call of {name}")
        return self._value(reply, codec)

    def _value(self, reply: dict, codec: _Codec):
        if "raised" in reply:
            raise _exception(reply.get("raised"), reply.get("message"))
        if "error" in reply:
            raise NotPlainData(str(reply["error"])[:300])
        if "value" not in reply:
            raise NotPlainData("the sandbox sent no value")
        if "keras" in reply:
            _keras_graph_in(codec, reply["keras"])
        return codec.decode(reply["value"])


class Function:
    """A student's function, living in the sandbox: calling it sends the arguments there."""

    def __init__(self, box: Sandbox, name: str):
        self._box, self.__name__ = box, name

    def __call__(self, *args, **kwargs):
        return self._box.call(self.__name__, args, kwargs)

    def __repr__(self):
        return f"<the notebook's function {self.__name__}>"


def _exception(type_name, message) -> Exception:
    """A student's exception, rebuilt in the grader as a built-in type (or StudentError)."""
    cls = getattr(builtins, str(type_name), None)
    text = str(message)[:2000]
    if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, (Stopped,)):
        try:
            return cls(text)
        except Exception:  # a built-in that wants other arguments (UnicodeDecodeError)
            pass
    return StudentError(f"{type_name}: {text}")


def _errstate() -> dict | None:
    if "numpy" not in sys.modules:
        return None
    import numpy as np

    return {k: v for k, v in np.geterr().items()}


_LIBC = None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the grader dies


# --------------------------------------------------------------------------- sandbox side


class _CellTimeout(KeyboardInterrupt):
    pass


def _otter_stub():
    """``otter`` inside the sandbox: grader.check(...) does nothing there (the grader runs the
    tests outside), and importing the real Otter would cost seconds per submission."""
    import importlib.machinery
    import types

    class Notebook:
        def __init__(self, *args, **kwargs):
            pass

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    mod = types.ModuleType("otter")
    mod.__spec__ = importlib.machinery.ModuleSpec("otter", None)
    mod.Notebook = Notebook
    return mod


def _status(exc) -> str:
    import errno

    if exc is None:
        return "ok"
    if isinstance(exc, _CellTimeout):
        return "timeout"
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, OSError) and exc.errno == errno.EAGAIN:
        return "processes"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return "file size"
    return "error"


def _builtin_name(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        if cls.__module__ == "builtins" and issubclass(cls, Exception):
            return cls.__name__
    return "Exception"


def _harness() -> None:  # pragma: no cover - runs inside the sandbox (tested end to end)
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")  # os.dup: not inherited by the notebook's children
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # the notebook's prints go to the output pipe, never to the replies
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", buffering=1, closefd=False, errors="replace")
    sys.stderr = open(2, "w", buffering=1, closefd=False, errors="replace")

    def reply(message: dict) -> None:
        replies.write(json.dumps(message).encode() + b"\n")
        replies.flush()

    busy = {"on": False}

    def on_alarm(signum, frame):
        if busy["on"]:
            raise _CellTimeout("cell time limit")

    signal.signal(signal.SIGALRM, on_alarm)

    @contextlib.contextmanager
    def limited(seconds):
        busy["on"] = True
        signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)  # again every second if caught
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            busy["on"] = False

    sys.modules["otter"] = _otter_stub()
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell()
    namespace = shell.user_ns
    call_timeout = 300.0
    reply({"hello": PROTOCOL})

    while True:
        line = requests.readline()
        if not line:
            os._exit(0)
        request = json.loads(line)
        op = request.get("op")
        if op == "run":
            call_timeout = float(request["cell_timeout"])
            statuses = []
            for source in request["cells"]:
                try:
                    with limited(call_timeout):
                        result = shell.run_cell(source, store_history=False)
                        exc = result.error_before_exec or result.error_in_exec
                except BaseException as e:  # noqa: BLE001 - the alarm, just as the cell ended
                    exc = e
                statuses.append(_status(exc))
            sys.stdout.flush()
            reply({"cells": statuses})
        elif op == "get":
            name = request["name"]
            if name not in namespace:
                reply({"missing": True})
            elif callable(namespace[name]):
                reply({"callable": True})
            else:
                try:
                    reply({"value": _Codec("sandbox").encode(namespace[name])})
                except Exception as e:  # noqa: BLE001
                    reply({"error": f"{name}: {e}"[:300]})
        elif op == "call":
            codec = _Codec("sandbox")
            try:
                func = namespace.get(request["name"])
                if not callable(func):
                    raise NameError(f"name {request['name']!r} is not a function in the notebook")
                args, kwargs = codec.decode(request["args"]), codec.decode(request["kwargs"])
                errstate = request.get("errstate")
                with contextlib.ExitStack() as stack:
                    if errstate and "numpy" in sys.modules:
                        stack.enter_context(sys.modules["numpy"].errstate(**errstate))
                    stack.enter_context(limited(call_timeout))
                    value = func(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001 - the student's exception, reported as data
                reply({"raised": "TimeoutError" if isinstance(e, _CellTimeout) else _builtin_name(e),
                       "message": str(e)[:2000] if not isinstance(e, _CellTimeout) else "time limit"})
                continue
            try:
                message = {"value": codec.encode(value)}
                if codec.keras_outputs:
                    message["keras"] = _keras_graph_out(codec)
            except Exception as e:  # noqa: BLE001
                message = {"error": f"{request['name']} returned {e}"[:300]}
            reply(message)
        else:  # "bye": the CPU time used, then the end, without waiting for the notebook's threads
            import resource

            usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
            reply({"cpu": sum(u.ru_utime + u.ru_stime for u in usage)})
            os._exit(0)


if __name__ == "__main__":
    _harness()
