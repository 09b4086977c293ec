"""SmolLM2-135M-Instruct, the offline GSM8K policy, through our engine on real GSM8K rows."""

from openr.engine import SamplingConfig, TransformersEngine
from openr.models import chat_prompt, load_model, load_tokenizer
from openr.tasks import load_task


def test_smollm2_writes_one_step_of_a_real_gsm8k_problem_and_stops_at_the_delimiter():
    tokenizer = load_tokenizer("smollm2", require_chat_template=True)
    model = load_model("smollm2")
    assert sum(p.numel() for p in model.parameters()) > 100e6  # 135M parameters, not a stub

    task = load_task("gsm8k")
    problems = task.problems("test", limit=2)
    prompts = [chat_prompt(tokenizer, task, problem) for problem in problems]
    assert problems[0].question in prompts[0]
    assert prompts[0].rstrip().endswith("assistant")  # SmolLM2's chat template

    engine = TransformersEngine(model, tokenizer, batch_size=2)
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=48)
    first = engine.generate(prompts, 1, greedy, stop=task.step_delimiter)
    again = engine.generate(prompts[:1], 1, greedy, stop=task.step_delimiter)
    for (completion,) in first:
        assert completion.text.strip()  # real text from the model
        assert task.step_delimiter not in completion.text  # cut at the step delimiter
        assert completion.finish_reason in {"stop", "eos", "length"}
        assert 1 <= completion.generated_tokens <= 48
    # greedy decoding is deterministic and independent of the batch it ran in
    assert again[0][0].text == first[0][0].text
