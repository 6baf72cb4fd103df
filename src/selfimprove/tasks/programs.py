"""Programs as answers: the prompt shows input -> output examples of a hidden composition of d list
operations; the answer is a Python expression over the input list `x` that reproduces them, run in the
sandbox (`selfimprove.sandbox`), never in this process.

    "2>6;7>-;8>6;0123456789>016345669=" -> "x|sub(2,6)|drop(7)|sub(8,6)"

The primitives, written with `|` (x|op applies op to x): `sub(a,b)` maps every digit a to b, `drop(k)`
filters every k out, `rev` reverses. A hidden program applies its maps and filters to distinct digits
(a map's target is never another operation's digit, so they commute and their order does not matter)
and perhaps reverses at the end; its difficulty d is the number of maps and filters. The examples are
its outputs on each digit it changes (a one-digit list, in ascending order) and on 0..9, so they
determine its behaviour on every input (a digit without an example of its own keeps its place in
0..9), and a prompt grows with d as a sum grows with its digits: each operation has an example of its
own (README, *Programs as answers*, compares this layout with others). Any program that behaves the
same is right: the verifier runs a candidate on the prompt's own examples (truth-free), execution
voting groups the committee's programs by their outputs on fresh probe inputs, and the audit runs them
on hidden inputs and compares with the hidden program's outputs, computed here by interpreting its
operations (never by running it).
"""

from __future__ import annotations

import atexit
import json
import re

import numpy as np

from selfimprove.tasks import register
from selfimprove.tasks._base import Batch, Task, stream_seed

ALL = list(range(10))  # the last example's input
PROBES, HIDDEN, HIDDEN_LENGTH = 6, 8, 8  # probe inputs (voting), hidden inputs (audit), their length
MAX_OPS = 9  # maps and filters of nine digits: a map's target needs a digit left untouched

PRELUDE = '''class Pipe(list):
    def __or__(self, op):
        return Pipe(op(self))


def sub(a, b):
    return lambda xs: [b if v == a else v for v in xs]


def drop(k):
    return lambda xs: [v for v in xs if v != k]


def rev(xs):
    return xs[::-1]


def f(x):
    x = Pipe(x)
    return list({answer})
'''

_OP = re.compile(r"\|(?:sub\((\d),(\d)\)|drop\((\d)\)|(rev))")
_sandbox = None


def sandbox():
    """The process's sandbox, started on first use (two workers) and closed at exit."""
    global _sandbox
    if _sandbox is None:
        from selfimprove.sandbox import Sandbox

        _sandbox = Sandbox(workers=2)
        atexit.register(_sandbox.close)
    return _sandbox


def source(answer: str) -> str:
    """The program the sandbox runs for an answer: the primitives, and f(x) = the answer's expression."""
    return PRELUDE.format(answer=answer)


def interpret(program: str, xs: list[int]) -> list[int]:
    """The hidden program's outputs, computed here from its operations (a hidden program is the task's
    own canonical text, parsed by a pattern, never run)."""
    if not program.startswith("x") or "".join(m.group(0) for m in _OP.finditer(program)) != program[1:]:
        raise ValueError(f"not a canonical program: {program!r}")
    for m in _OP.finditer(program):
        a, b, k, r = m.groups()
        xs = xs[::-1] if r else [v for v in xs if v != int(k)] if k else [int(b) if v == int(a) else v for v in xs]
    return xs


def shown(xs: list[int]) -> str:
    """A list as a prompt writes it: its digits, or "-" when it is empty (a filtered digit's example is
    `k>-`, four characters like every other one-digit example)."""
    return "".join(map(str, xs)) or "-"


def _digits(s: str) -> list[int]:
    return [] if s == "-" else [int(c) for c in s]


def examples(prompt: str) -> list[tuple[list[int], list[int]]]:
    """The prompt's (input, output) examples."""
    pairs = [e.split(">") for e in prompt.split("=")[0].split(";")]
    return [(_digits(i), _digits(o)) for i, o in pairs]


def fresh_inputs(prompt: str, stream: str, n: int, length: int) -> list[list[int]]:
    """n random inputs for a prompt, a pure function of (prompt, stream); every digit shows in them, so a
    program that touches a digit the examples lack behaves differently on them."""
    rng = np.random.default_rng(stream_seed(0, stream, prompt))
    xs = rng.integers(0, 10, size=(n, length))
    places = rng.choice(n * length, size=10, replace=False)
    xs.flat[places] = rng.permutation(10)
    return xs.tolist()


class Programs(Task):
    name = "program"
    axes = ("ops",)
    runs_code = True
    alphabet = "".join(map(chr, range(32, 127)))  # an answer is any one-line Python expression
    description = "write x|op|op... (sub(a,b), drop(k), rev) that turns each example's input into its output"

    def example(self):
        return (3,)

    def drawable(self, difficulty):
        return difficulty[0] <= MAX_OPS

    def base_difficulties(self, base):
        return [(d,) for d in range(1, min(base, MAX_OPS - 1) + 1)]  # a harder step is left to learn

    def audit_difficulties(self, trained, below, above):
        return [d for d in super().audit_difficulties(trained, below, above) if self.drawable(d)]

    def hidden(self, rng: np.random.Generator, d: int) -> str:
        """A canonical program of d maps and filters, reversed at the end half the time (rev does not count:
        with it counted, a depth's programs that reverse have one map or filter fewer, all the seed data
        shows, and the model learned those alone). Drawn again while its output on 0..9 reads the same
        both ways but has two different digits: then its examples could not show whether it reverses,
        though other inputs would (at depth 8 one program in eleven; labels that guessed wrong were 1.6%
        of the kept ones at depth 7)."""
        for _ in range(100):  # a bound, though one draw in eleven at most is drawn again
            digits = rng.permutation(10)
            sources, others = sorted(digits[:d].tolist()), digits[d:]
            ops = [f"|drop({a})" if rng.random() < 0.4 else f"|sub({a},{rng.choice(others)})" for a in sources]
            program = "x" + "".join(ops) + "|rev" * bool(rng.random() < 0.5)
            out = interpret(program, ALL)
            if out != out[::-1] or len(set(out)) < 2:
                return program
        raise RuntimeError(f"no program of {d} operations whose examples show whether it reverses in 100 draws")

    def sample(self, difficulty, index, seed):
        self.validate_difficulty(difficulty)
        (d,) = difficulty
        if not self.drawable(difficulty):
            raise ValueError(f"task 'program' has programs of at most {MAX_OPS} maps and filters, got {d}")
        prompts, truths = [], []
        for i in np.asarray(index, dtype=np.int64).tolist():
            program = self.hidden(np.random.default_rng([seed, d, i]), d)
            inputs = [[int(m.group(1) or m.group(3))] for m in _OP.finditer(program) if not m.group(4)] + [ALL]
            prompts.append(";".join(shown(x) + ">" + shown(interpret(program, x)) for x in inputs) + "=")
            truths.append(program)
        return Batch(difficulty, prompts, truths)

    def max_answer_length(self, prompt):
        return 1 + 9 * MAX_OPS + 4  # x, every map or filter, rev

    # --- by execution, in the sandbox ----------------------------------------------------------------

    def _run(self, jobs: list[tuple[str, list[list[int]]]]) -> list:
        """Each (answer, inputs) run once in the sandbox (repeats share one run): Results in order."""
        unique = list(dict.fromkeys((a, json.dumps(xs)) for a, xs in jobs))
        results = sandbox().run_many([(source(a), json.loads(xs)) for a, xs in unique])
        done = dict(zip(unique, results))
        return [done[(a, json.dumps(xs))] for a, xs in jobs]

    def verify(self, prompt, answer):
        return self.verify_many([prompt], [answer])[0]

    def verify_many(self, prompts, answers):
        """Truth-free: the answer reproduces every example of its own prompt (run in the sandbox)."""
        pairs = [examples(p) for p in prompts]
        results = self._run([(a, [i for i, _ in ex]) for a, ex in zip(answers, pairs)])
        return [r.ok and r.outputs == [o for _, o in ex] for r, ex in zip(results, pairs)]

    def behaviours(self, prompts, outputs):
        """Execution voting: each answer's outputs on the prompt's probe inputs (fresh, drawn without truth),
        as a key; a program that fails has the key of its failure ("\\0sandbox: timeout", ...)."""
        jobs = [(a, fresh_inputs(p, "probe", PROBES, HIDDEN_LENGTH)) for p, outs in zip(prompts, outputs) for a in outs]
        results = iter(self._run(jobs))
        keys = []
        for outs in outputs:
            keys.append([json.dumps(r.outputs) if r.ok else "\0" + r.drop_reason() for r in
                         (next(results) for _ in outs)])
        return keys

    def correct(self, prompts, answers, truths):
        """The audit (reads truth): the answer's outputs on hidden inputs equal the hidden program's."""
        hidden = [fresh_inputs(p, "hidden", HIDDEN, HIDDEN_LENGTH) for p in prompts]
        results = self._run(list(zip(answers, hidden)))
        return [r.ok and r.outputs == [interpret(t, x) for x in xs] for r, t, xs in zip(results, truths, hidden)]


register(Programs())
