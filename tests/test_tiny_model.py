"""`write_tiny_model` / `qwen-math dev tiny-model`: a loadable random Qwen2 checkpoint."""

from __future__ import annotations

import json

import pytest

from qwen_math.cli import main
from qwen_math.errors import UsageError
from qwen_math.tiny import SHAPES, weight_shapes, write_tiny_model

CHECKPOINT_FILES = (
    "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
    "tokenizer_config.json", "vocab.json", "merges.txt", "chat_template.jinja",
)


def test_checkpoint_has_every_file(tiny_checkpoint):
    for name in CHECKPOINT_FILES:
        assert (tiny_checkpoint / name).is_file(), name


def test_every_file_has_the_same_mode(tiny_checkpoint):
    # safetensors writes 0600; the weights are as readable as the rest (0644 under umask 022)
    modes = {name: (tiny_checkpoint / name).stat().st_mode & 0o777 for name in CHECKPOINT_FILES}
    assert len(set(modes.values())) == 1, modes


def test_loads_with_transformers_at_the_tiny_shape(tiny_checkpoint):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    config = model.config
    assert config.model_type == "qwen2" and config.num_hidden_layers == 2
    assert config.hidden_size == 64 and config.num_key_value_heads == 2
    assert config.max_position_embeddings == 4096
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert list(model.generation_config.eos_token_id) == [151645, 151643]
    assert tokenizer.apply_chat_template(
        [{"role": "user", "content": "2+2?"}], tokenize=False, add_generation_prompt=True
    ).endswith("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n")


def test_same_seed_same_weights_other_seed_differs(tmp_path, tiny_checkpoint):
    again = write_tiny_model(tmp_path / "again", seed=0)
    other = write_tiny_model(tmp_path / "other", seed=1)
    weights = (tiny_checkpoint / "model.safetensors").read_bytes()
    assert (again / "model.safetensors").read_bytes() == weights
    assert (other / "model.safetensors").read_bytes() != weights


# --- shapes: parameter counts of the released sizes (no weights written) --------------------
@pytest.mark.parametrize(
    "shape,billions",
    [
        ("0.5b", 0.494),  # Qwen2.5-0.5B: 0.49B
        ("1.5b", 1.544),  # Qwen2.5-Math-1.5B: 1.54B
        ("7b", 7.616),  # Qwen2.5-Math-7B: 7.62B
    ],
)
def test_weight_shapes_give_released_parameter_counts(shape, billions):
    count = 0
    for dims in weight_shapes(SHAPES[shape]).values():
        size = 1
        for d in dims:
            size *= d
        count += size
    assert count / 1e9 == pytest.approx(billions, abs=0.002)


def test_unknown_shape_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="unknown shape '3b'"):
        write_tiny_model(tmp_path, shape="3b")


# --- CLI ----------------------------------------------------------------------------------
def test_cli_writes_checkpoint(tmp_path, capsys):
    assert main(["-q", "dev", "tiny-model", str(tmp_path / "m"), "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]


def test_cli_rejects_unknown_shape(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["dev", "tiny-model", str(tmp_path), "--shape", "3b"])
    assert exc.value.code == 2
