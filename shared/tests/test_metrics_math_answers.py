import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.metrics import answers_match, extract_answer

# Real rows: MATH500 (PRM800K split, solution and answer fields; long solutions cut to their
# last sentence) and GSM8K test (answer field), from the offline data mirror.
MATH500_ROWS = [
    (  # test/algebra/2584.json
        r"$f(-2)+f(-1)+f(0)=\frac{3(-2)-2}{-2-2}+\frac{3(-1)-2}{-1-2}+\frac{3(0)-2}{0-2}"
        r"=\frac{-8}{-4}+\frac{-5}{-3}+\frac{-2}{-2}=2+\frac{5}{3}+1=\boxed{\frac{14}{3}}$",
        r"\frac{14}{3}",
    ),
    (  # test/intermediate_algebra/134.json
        r"$(1-2)+(3-4)+ \dots +(97-98)+(99-100) = 50(-1) = \boxed{-50}.$",
        "-50",
    ),
    (  # test/prealgebra/572.json
        r"Multiplying numerator and denominator by 5 gives $3/20=15/100 = \boxed{0.15}$.",
        "0.15",
    ),
    (  # test/prealgebra/1302.json
        r"Factor 242 as $11^2 \cdot 2$. Then $\sqrt{242} = \sqrt{11^2} \cdot \sqrt2 = "
        r"\boxed{11\sqrt2}$.",
        r"11\sqrt2",
    ),
    (  # test/precalculus/807.json (last sentence)
        r"Therefore, the polar coordinates are $\boxed{\left( 3, \frac{\pi}{2} \right)}.$",
        r"\left( 3, \frac{\pi}{2} \right)",
    ),
    (  # test/intermediate_algebra/1388.json (last sentence)
        r"This factors as $(n - 1)(n + 2) = 0,$ so the solutions are $n = \boxed{1,-2}.$",
        "1,-2",
    ),
    (  # test/precalculus/927.json (last sentence)
        r"Hence, the angle between the lines is $\boxed{90^\circ}.$",
        r"90^\circ",
    ),
    (  # test/algebra/1349.json (last sentence)
        r"Therefore, $\boxed{\text{Evelyn}}$ is our answer.",
        r"\text{Evelyn}",
    ),
    (  # test/algebra/2193.json (last sentence)
        r"so $x=1$ is extraneous. Therefore, our only solution is $\boxed{x=5}$.",
        "x=5",
    ),
]

GSM8K_ROWS = [
    (  # test row 0
        "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
        "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer’s market.\n#### 18",
        "18",
    ),
    (  # test row 146
        "The first set had 500 pieces, and the second set had 3 times as many as the first "
        "set, so the second set has 500*3=<<500*3=1500>>1500 pieces\nThe third set had "
        "one-quarter of the 500 pieces, so that means it had 500*.25= <<500*.25=125>>125 "
        "pieces\nIn total, that means Johnny picked up 500 + 1500+ 125= "
        "<<500+1500+125=2125>>2125 blocks\n#### 2,125",
        "2125",
    ),
    (  # test row 249 (last two lines)
        "Sue ate 46-18=<<46-18=28>>28 more cookies.\n"
        "Sue consumed 28*200=<<28*200=5600>>5,600 more calories.\n#### 5,600",
        "5600",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so the total is $\boxed{\frac{14}{3}}$.", r"\frac{14}{3}"),
        (r"first $\boxed{1}$, then $\boxed{\sqrt{x^{2}}}$", r"\sqrt{x^{2}}"),
        (r"an empty box $\boxed{}$ after $\boxed{7}$", "7"),
        (r"a brace-less box: $\boxed 5$", "5"),
        ("She makes $18.\n#### 18", "18"),
        ("#### 2,125", "2125"),
        ("The answer is 1,234.5 dollars.", "1234.5"),
        ("x = -3.", "-3"),
        (r"an unclosed box \boxed{12 and then 4", "4"),
        ("no number here", None),
    ],
)
def test_extract_answer_takes_the_last_box_then_the_gsm8k_line_then_the_last_number(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        (r"\frac{1}{2}", "0.5"),
        (r"\dfrac{3}{4}", "3/4"),
        ("1,000", "1000"),
        (r"\sqrt{2}/2", r"\frac{\sqrt{2}}{2}"),
        (r"(-\infty, 3)", "x < 3"),
        (r"[1,2)", r"[1, 2)"),
        (r"50\%", "50"),
        (r"90^\circ", "90"),
        (r"\boxed{x=2}", "2"),  # math-verify: an assignment answers with its value
        (r"\left( 3, \frac{\pi}{2} \right)", r"(3, \frac{\pi}{2})"),
        ("0.3333333", r"\frac{1}{3}"),  # equal to 6 decimals
        (r"\$18", "18"),
    ],
)
def test_equivalent_forms_of_an_answer_match(prediction, reference):
    assert answers_match(prediction, reference)


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        (r"[1,2)", "(1,2)"),  # a closed end is not an open one
        ("0.333", r"\frac{1}{3}"),
        (r"90^\circ", r"\frac{\pi}{2}"),  # degrees are dropped, not converted
        ("1,2", "12"),  # a comma between single digits separates two answers
        ("-50", "50"),
    ],
)
def test_different_answers_do_not_match(prediction, reference):
    assert not answers_match(prediction, reference)


@pytest.mark.parametrize("prediction", ["", None, r"\frac{", "}{", r"\boxed{", "$$"])
def test_unparseable_predictions_give_false_without_raising(prediction, caplog):
    with caplog.at_level(logging.DEBUG, logger="shared.metrics.math_answers"):
        assert answers_match(prediction, "1") is False


def test_answers_match_works_outside_the_main_thread():
    pairs = [(r"\frac{1}{2}", "0.5"), ("1,000", "1000"), ("3", "4")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda pair: answers_match(*pair), pairs))
    assert results == [True, True, False]


@pytest.mark.parametrize(("solution", "answer"), MATH500_ROWS)
def test_math500_solutions_match_their_reference_answer(solution, answer):
    assert answers_match(solution, answer)
    assert answers_match(extract_answer(solution), answer)


def test_a_math500_solution_does_not_match_another_rows_answer():
    assert not answers_match(MATH500_ROWS[0][0], MATH500_ROWS[2][1])  # 14/3 against 0.15


@pytest.mark.parametrize(("solution", "answer"), GSM8K_ROWS)
def test_gsm8k_final_lines_are_extracted_and_match(solution, answer):
    assert extract_answer(solution) == answer
    assert answers_match(solution, answer)
    assert not answers_match(solution, str(int(answer) + 1))
