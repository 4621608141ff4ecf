"""Generated context-referring tasks: `vartrack` (x = 3. y = x + 4. ...) and `wordproblems` (one person's
things changed `steps` times). Everything needed is in the prompt and the answer is computed exactly; item i
depends only on (task, seed, steps, i), so `limit` takes a prefix.

Left out on purpose: distractor facts and tasks whose answer is not a number.
"""

from __future__ import annotations

import random

from .registry import Item, TaskSpec, register_task

_VARS = "abcdefghjkmnpqrstuvwxyz"


def gen_vartrack(rng: random.Random, steps: int) -> Item:
    """x = 3. y = x + 4. ... What is the value of <last>? Each variable builds on the previous one."""
    names = rng.sample(_VARS, steps + 1) if steps + 1 <= len(_VARS) else \
        [f"v{i}" for i in rng.sample(range(10 * steps), steps + 1)]
    value = rng.randint(1, 9)
    facts, sol = [f"{names[0]} = {value}."], [f"{names[0]} = {value}."]
    for k in range(1, steps + 1):
        c = rng.randint(1, 9)
        op = "-" if rng.random() < 0.5 and value - c >= 0 else "+"
        new = value + c if op == "+" else value - c
        facts.append(f"{names[k]} = {names[k - 1]} {op} {c}.")
        sol.append(f"{names[k]} = {names[k - 1]} {op} {c} = {value} {op} {c} = {new}.")
        value = new
    q = " ".join(facts) + f" What is the value of {names[-1]}?"
    return Item("", q, (str(value),), " ".join(sol) + f" The answer is {value}.")


_PEOPLE = ("Ana", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Leo", "Maya",
           "Nico", "Olga", "Pablo", "Rosa", "Sam", "Tara", "Victor")
_THINGS = ("apples", "marbles", "stickers", "books", "coins", "pencils", "cards", "shells", "stamps", "cookies")
_ADD = ("{p} buys {c} more {t}.", "{o} gives {p} {c} {t}.", "{p} finds {c} {t}.", "{p} wins {c} {t} in a game.")
_SUB = ("{p} gives {c} {t} to {o}.", "{p} loses {c} {t}.", "{p} sells {c} {t}.")


def gen_wordproblems(rng: random.Random, steps: int) -> Item:
    """A person's count of things changed `steps` times (add, take away, double); how many at the end?"""
    p, o = rng.sample(_PEOPLE, 2)
    t = rng.choice(_THINGS)
    value = rng.randint(2, 20)
    facts, sol = [f"{p} has {value} {t}."], [f"{p} starts with {value} {t}."]
    for _ in range(steps):
        c = rng.randint(2, 9)
        r = rng.random()
        if r < 0.15 and value <= 50:
            facts.append(f"{p} doubles the number of {t}.")
            sol.append(f"{value} * 2 = {value * 2}.")
            value *= 2
        elif r < 0.55 and c <= value:
            facts.append(rng.choice(_SUB).format(p=p, o=o, c=c, t=t))
            sol.append(f"{value} - {c} = {value - c}.")
            value -= c
        else:
            facts.append(rng.choice(_ADD).format(p=p, o=o, c=c, t=t))
            sol.append(f"{value} + {c} = {value + c}.")
            value += c
    q = " ".join(facts) + f" How many {t} does {p} have now?"
    return Item("", q, (str(value),), " ".join(sol) + f" The answer is {value}.")


register_task(TaskSpec(
    name="vartrack", description="variable tracking: x = 3. y = x + 4. ... What is the value of z? (--steps)",
    answer="number", modes=("direct", "cot"), source="generated", generator=gen_vartrack, shots=2))
register_task(TaskSpec(
    name="wordproblems", description="generated multi-step word problems about one person's things (--steps)",
    answer="number", modes=("direct", "cot"), source="generated", generator=gen_wordproblems, shots=2))
