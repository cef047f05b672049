"""Task suites, the sandboxed test runner and the repair agent's core.

- model.py      Task, TestSpec, TestCase (the harness's test form), content_hash
- suites.py     load_suite(SPEC): quixbugs:PATH, humanevalfix:PATH, jsonl:PATH, fixtures; task_from_code
- quixbugs.py   the QuixBugs loader (upstream pytest modules run without pytest)
- sandbox.py    run_tests(task, program, limits=Limits(), sandbox=Sandbox()) -> TestReport (bubblewrap)
- harness.py    the lean in-sandbox harness (stdlib only, one fork per test)
- calibrate.py  per-test CPU limits from the fixed program; run_tests_calibrated
- agent.py      prompts, extract_program, the rollout step functions, run_rollout
- cli.py        `dpo-tui tasks list` and `dpo-tui tasks check`
"""
