#!/usr/bin/env python3
"""Renders every conversation of cases.json with each template here (*.jinja)
using Python's jinja2, set up the way Hugging Face transformers sets up its
chat-template environment (trim_blocks, lstrip_blocks, loopcontrols, a
json.dumps tojson with ensure_ascii off, raise_exception, a fixed
strftime_now), and writes goldens.json: for each template and case either
{"output": text} or {"error": message}. Run once during development with
Debian's python3-jinja2; tests/test_jinja.c compares gemma4.c's own
interpreter against the result byte for byte.

    python3 tests/data/templates/make_goldens.py
"""
import json
import os

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = ["gemma4", "gemma4-31b-interleaved", "gemma3"]


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return "26 Jul 2024"  # a fixed date keeps the goldens reproducible


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(template, case):
    kwargs = {"bos_token": "<bos>", "eos_token": "<eos>"}
    if "enable_thinking" in case:
        kwargs["enable_thinking"] = case["enable_thinking"]
    kwargs.update(case.get("kwargs", {}))
    try:
        text = template.render(messages=case["messages"], tools=case.get("tools"), documents=None,
                               add_generation_prompt=case["add_generation_prompt"], **kwargs)
        return {"output": text}
    except jinja2.exceptions.TemplateError as e:
        return {"error": str(e)}


def main():
    with open(os.path.join(HERE, "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    env = environment()
    goldens = {}
    for name in TEMPLATES:
        with open(os.path.join(HERE, name + ".jinja"), encoding="utf-8") as f:
            template = env.from_string(f.read())
        goldens[name] = {case["name"]: render(template, case) for case in cases}
    with open(os.path.join(HERE, "goldens.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(goldens, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("%d templates x %d cases" % (len(TEMPLATES), len(cases)))


if __name__ == "__main__":
    main()
