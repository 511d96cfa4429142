# Runs one LiveCodeBench test case inside the sandbox, the way the reference harness
# (lcb_runner/evaluation/testing_util.py) runs it in its worker process, so that a program passes
# here exactly when it passes there.
#
# argv: MODE GUARD SOLUTION TIMEOUT_S [FUNC_NAME EXPECTED_JSON_FILE]
#   (file names relative to this script's directory)
#   MODE   stdin | call
#   GUARD  guard | noguard   (the reference disables os.fork, os.kill, ... before running code)
# The test input arrives on stdin. What the harness reports goes to the original stdout:
#   stdin mode: the program's captured output; call mode: repr of a wrong return value.
# A finished test ends that report with END, so a program that kills the interpreter early
# (os._exit(0)) fails, as it does in the reference, instead of looking like a clean exit.
# What the program prints is sent on as it comes, not kept here: the supervisor bounds it from
# outside (and stops the test as an output limit), so a flood cannot grow this process. The start of each step the reference times
# separately (loading the solution, running the test) is marked with a byte on fd 3, on which
# the supervisor restarts the per-test wall clock, so the limit holds whatever the program does
# with the alarm.
# Exit status: 0 done, 3 runtime error (traceback on stderr), 4 time limit,
#              6 wrong answer (call mode), 7 required function missing.
import ast
import io
import json
import os
import signal
import sys
import types

EXIT_RUNTIME, EXIT_TIME, EXIT_WRONG, EXIT_MISSING = 3, 4, 6, 7
END = b"\0END-OF-TEST\0"
CLOCK_FD = 3
SEND_AT = 1 << 16

# The header the reference prepends to every program (same modules, same order).
HEADER_MODULES = (
    "string re datetime collections heapq bisect copy math random statistics itertools "
    "functools operator io sys json builtins typing"
).split()
HEADER = (
    "".join("from %s import *\n" % m for m in HEADER_MODULES)
    + "".join("import %s\n" % m for m in HEADER_MODULES if m not in ("builtins", "typing"))
    + "sys.setrecursionlimit(50000)\n"
)


class TimeoutException(Exception):
    pass


def start_timed_step(last=False):
    try:
        os.write(CLOCK_FD, b".")
        if last:
            os.close(CLOCK_FD)
    except OSError:
        pass  # the program closed it: it gets no fresh clock


class StreamedOutput(io.StringIO):
    # The reference captures sys.stdout in an io.StringIO; this is one (same attributes, no
    # `buffer`, no `fileno`) whose text goes on to the supervisor in blocks instead of staying in
    # this process.

    def __init__(self, fd, write, lock):
        super().__init__()
        self._fd, self._write, self._lock = fd, write, lock
        self._pending, self._size = [], 0

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("string argument expected, got '%s'" % type(s).__name__)
        data = s.encode("utf-8", "backslashreplace")
        with self._lock:
            self._pending.append(data)
            self._size += len(data)
            if self._size >= SEND_AT:
                self._send()
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def close(self, *args):
        return 1

    def _send(self):
        data = b"".join(self._pending)
        self._pending, self._size = [], 0
        view = memoryview(data)
        while view:
            view = view[self._write(self._fd, view) :]

    def finish(self):
        with self._lock:
            self._send()


def on_alarm(signum, frame):
    raise TimeoutException


def disable_destructive_functions():
    # What the reference's reliability_guard() does before running generated code; a program
    # that calls one of these fails there, so it must fail here too.
    import builtins
    import faulthandler
    import shutil
    import subprocess

    faulthandler.disable()
    builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in (
        "kill system putenv remove removedirs rmdir fchdir setuid fork forkpty killpg rename "
        "renames truncate replace unlink fchmod fchown chmod chown chroot lchflags lchmod "
        "lchown getcwd chdir"
    ).split():
        setattr(os, name, None)
    for name in ("rmtree", "move", "chown"):
        setattr(shutil, name, None)
    subprocess.Popen = None
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


def drop_main_guard(code):
    # A trailing `if __name__ == '__main__':` block is inlined, as the reference does.
    try:
        tree = ast.parse(code)
        last = tree.body[-1]
        if isinstance(last, ast.If) and ast.unparse(last.test).strip() == "__name__ == '__main__'":
            code = ast.unparse(tree.body[:-1]) + "\n" + ast.unparse(last.body)
    except Exception:
        pass
    return code


def wrap_in_function(code):
    # Top-level imports stay at module level; every other statement becomes the body of
    # `wrapped_function`, which is called once per test. On a parse error the code is left as is
    # (and then fails to compile), like the reference.
    try:
        tree = ast.parse(code)
        imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
        others = [s for s in tree.body if not isinstance(s, (ast.Import, ast.ImportFrom))]
        fn = ast.FunctionDef(
            name="wrapped_function",
            args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
            body=others,
            decorator_list=[],
            lineno=-1,
        )
        return HEADER + "\n" + ast.unparse(imports) + "\n" + ast.unparse(fn)
    except Exception:
        return code


def load(code, timeout):
    start_timed_step()
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        module = types.ModuleType("tmp_sol", "")
        exec(code, module.__dict__)
        return module.Solution() if "class Solution" in code else module
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def truncate(value, length=300):
    s = value if isinstance(value, str) else str(value)
    return s if len(s) <= length else s[: length // 2] + "...(truncated) ..." + s[-length // 2 :]


def call_with_mocked_stdin(method, text):
    from unittest.mock import mock_open, patch
    from contextlib import ExitStack

    lines = iter(text.split("\n"))
    # Same patches, entered in the same order as the reference's stacked decorators: the three
    # method patches land on the *current* sys.stdin object (reachable through `from sys import *`),
    # then sys.stdin itself is replaced and open() is mocked.
    with ExitStack() as stack:
        stack.enter_context(patch("sys.stdin.read", lambda *a: text))
        stack.enter_context(patch("sys.stdin.readlines", lambda *a: text.split("\n")))
        stack.enter_context(patch("sys.stdin.readline", lambda *a: next(lines)))
        stack.enter_context(patch("sys.stdin", io.StringIO(text)))
        stack.enter_context(patch("builtins.open", mock_open(read_data=text)))
        try:
            return method()
        except SystemExit:
            pass


def main():
    mode, guard, solution, timeout = sys.argv[1:5]
    here = os.path.dirname(os.path.abspath(__file__))
    solution = os.path.join(here, solution)
    timeout = float(timeout)
    exit_ = os._exit
    write = os.write
    chunks = []
    while True:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    text = b"".join(chunks).decode("utf-8")
    # The reference's worker is a multiprocessing child: its real stdin is /dev/null, and what
    # the program writes straight to fd 1 is not graded.
    sys.stdin = open(os.devnull)
    result_fd = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    with open(solution, encoding="utf-8") as f:
        code = f.read()
    if mode == "call":
        func_name = sys.argv[5]
        with open(os.path.join(here, sys.argv[6]), encoding="utf-8") as f:
            expected = json.loads(f.read())
    signal.signal(signal.SIGALRM, on_alarm)
    if guard == "guard":
        disable_destructive_functions()

    def failed(exc):
        if isinstance(exc, TimeoutException):
            exit_(EXIT_TIME)
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.__stderr__)
        sys.__stderr__.flush()
        exit_(EXIT_RUNTIME)

    if mode == "stdin":
        code = wrap_in_function(drop_main_guard(code))
        name = "wrapped_function"
    else:
        code = HEADER + "\n\n" + code
        name = func_name
    try:
        target = load(code, timeout)
    except BaseException as exc:
        failed(exc)
    method = getattr(target, name, None)
    if method is None:
        sys.__stderr__.write("function %r not found\n" % name)
        sys.__stderr__.flush()
        exit_(EXIT_MISSING)

    if mode == "stdin":
        import threading

        captured = StreamedOutput(result_fd, write, threading.Lock())
        saved = sys.stdout
        sys.stdout = captured
        start_timed_step(last=True)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            call_with_mocked_stdin(method, text)
            signal.setitimer(signal.ITIMER_REAL, 0)
        except BaseException as exc:
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.stdout = saved
            failed(exc)
        sys.stdout = saved
        captured.finish()
        out = END
        while out:
            out = out[write(result_fd, out) :]
        exit_(0)

    args = [json.loads(line) for line in text.split("\n")]
    start_timed_step(last=True)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        prediction = method(*args)
        signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(prediction, tuple):
            prediction = list(prediction)
        ok = bool(prediction == expected)
    except BaseException as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        failed(exc)
    if ok:
        write(result_fd, END)
        exit_(0)
    out = truncate(prediction).encode("utf-8", "backslashreplace") + END
    while out:
        out = out[write(result_fd, out) :]
    exit_(EXIT_WRONG)


main()
