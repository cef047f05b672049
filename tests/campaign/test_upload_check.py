"""One set of format rules: the pre-upload check runs the SDK's own check_file, then the
preference rules the simulator's server-side check imports too, then the product's own
(chosen != rejected, the DPO context)."""

from __future__ import annotations

import json

import httpx
import pytest
from together import Together

import dpo_tui.domain.preference_format as rules
import dpo_tui.sim.dpo_format as sim_rules
from dpo_tui.campaign.train import TrainingFailed, check_before_upload
from dpo_tui.provider.tokenizer import get_tokenizer
from dpo_tui.sim.server import SimServer

GOOD = {"input": {"messages": [{"role": "user", "content": "fix f"}]},
        "preferred_output": [{"role": "assistant", "content": "```python\ndef f(x):\n    return x + 1\n```"}],
        "non_preferred_output": [{"role": "assistant", "content": "```python\ndef f(x):\n    return x\n```"}]}


def write(tmp_path, lines, name="p.jsonl"):
    path = tmp_path / name
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path, path.read_bytes()


def test_the_sdks_own_check_file_runs_first(tmp_path):
    path, data = write(tmp_path, [GOOD, "[1, 2]"])
    with pytest.raises(TrainingFailed) as exc:
        check_before_upload(path, data)
    # the SDK's wording, not the product's: its checker ran
    assert "Together's check_file" in exc.value.message and "Full validation runs on the server" in exc.value.message
    path, data = write(tmp_path, [GOOD], name="p.txt")
    with pytest.raises(TrainingFailed, match="Only files with extensions .jsonl"):
        check_before_upload(path, data)


def test_the_products_own_checks_chosen_equals_rejected_and_the_dpo_context(tmp_path):
    same = {**GOOD, "non_preferred_output": GOOD["preferred_output"]}
    path, data = write(tmp_path, [GOOD, same])
    with pytest.raises(TrainingFailed, match=r"line 2: preferred and non-preferred answers are the same.*"
                                             r"rule: chosen_equals_rejected"):
        check_before_upload(path, data)
    path, data = write(tmp_path, [GOOD])
    check_before_upload(path, data, max_seq_length=8192, tokenizer=get_tokenizer())
    with pytest.raises(TrainingFailed, match=r"line 1: prompt \+ chosen \+ rejected is \d+ tokens, over "
                                             r"training.max_seq_length 20 .*rule: dpo_context"):
        check_before_upload(path, data, max_seq_length=20, tokenizer=get_tokenizer())


BAD = [({**GOOD, "lineage": "x"}, "extra_column"),
       ({**GOOD, "input": {"messages": [{"role": "assistant", "content": "hi"}]}}, "last_message_not_assistant"),
       ({**GOOD, "preferred_output": []}, "preferred_output_one_message"),
       ({**GOOD, "input": {"messages": [{"role": "user", "content": "x", "name": "me"}]}}, "message_keys"),
       ({**GOOD, "non_preferred_output": [{"role": "user", "content": "x"}]}, "non_preferred_output_role")]


def test_product_and_simulator_refuse_the_same_lines_with_the_same_rule(tmp_path):
    assert sim_rules.check_line is rules.check_line  # one module, imported by both
    with SimServer(seed=1) as sim:
        client = Together(api_key="sim-key", base_url=sim.base_url, _strict_response_validation=True, max_retries=0)
        for i, (line, rule) in enumerate(BAD):
            path, data = write(tmp_path, [GOOD, line], name=f"bad{i}.jsonl")
            with pytest.raises(TrainingFailed, match=f"line 2: .*rule: {rule}"):
                check_before_upload(path, data)
            f = client.files.upload(file=path, purpose="fine-tune", check=False)  # past the product, to the server
            report = httpx.get(f"{sim.base_url}/v1/files/{f.id}", headers={"Authorization": "Bearer sim-key"}).json()[
                "validation_report"]
            assert f.processing_status == "INVALID_FORMAT" and report["rule"] == rule and report["line"] == 2
