"""Chinese and multiple-choice answers: extraction and grading, table-driven.

Each case is a response tail, the extraction policy (or a registered dataset) it is graded
under (the policies the new datasets name: ``multiple_choice``, ``zh_choice``, ``zh_mixed``,
``zh_open``), the gold, the
row's options (a key of ``OPTIONS``, or ``None``), the answer extraction must find, and the
verdict. Near misses (a wrong letter, a letter mentioned earlier, another option's text,
a Chinese unit on a different number, a hedge between two letters) must never grade correct.
"""

from __future__ import annotations

import pytest

from eval.choices import options_in_text, options_map
from eval.extract import extract_answer
from eval.grade import grade_batch, grade_response

#: Options of the rows the cases below are graded against.
OPTIONS = {
    "num": ("(A) 12", "(B) 15", "(C) 18", "(D) 21", "(E) 24"),
    "aqua": ("A)21", "B)35", "C)61", "D)$65", "E)78.20"),
    "zh": {"A": "$-1-i$", "B": "$-1+i$", "C": "$1-i$", "D": "$1+i$"},
    "frac": ("(A) $\\frac{1}{6}$", "(B) $\\frac{1}{3}$", "(C) $\\frac{1}{2}$", "(D) $\\frac{2}{3}$"),
    "text": ("(A) telomeres are removed", "(B) a codon changes", "(C) a base pair is inserted",
             "(D) translation stops"),
    "dup": ("(A) 4", "(B) 4", "(C) 5", "(D) 6"),
    "aqua43": ("A)42857", "B)32456", "C)76523", "D)24567", "E)43566"),
    "aqua50": ("A)453", "B)651", "C)400", "D)487", "E)286"),
    "aqua70": ("A)21%", "B)20%", "C)25%", "D)33%", "E)18%"),
    "aqua130": ("A)4 1/3 km/h", "B)7 2/3 km/h", "C)9 ½ km/h", "D)8 km/h", "E)81 km/h"),
    "aqua186": ("A)43 seconds", "B)39 seconds", "C)20 seconds", "D)33 seconds", "E)55 seconds"),
}

C, W, N = "correct", "wrong", "no_answer"

CASES = [
    # --- Chinese anchors: 答案是 / 答案为 / 故选 / 所以选 / 选 / 答：
    ("所以答案是 C", "zh_choice", "C", None, "C", C),
    ("综上，答案是C。", "zh_choice", "C", None, "C", C),
    ("故选：B", "zh_choice", "B", None, "B", C),
    ("故选B.", "zh_choice", "B", None, "B", C),
    ("所以选D", "zh_choice", "D", None, "D", C),
    ("因此选 A。", "zh_choice", "A", None, "A", C),
    ("则应选C", "zh_choice", "C", None, "C", C),
    ("答案选 B", "zh_choice", "B", None, "B", C),
    ("正确答案是 D", "zh_choice", "D", None, "D", C),
    ("正确选项为 A", "zh_choice", "A", None, "A", C),
    ("经检验只有选B满足条件", "zh_choice", "B", None, "B", C),
    ("答案为 $\\frac{1}{2}$", "zh_open", "\\frac{1}{2}", None, "\\frac{1}{2}", C),
    ("所以答案为 $\\frac{1}{2}$，即所求概率。", "zh_open", "\\frac{1}{2}", None, "\\frac{1}{2}", C),
    ("答案是 $2\\sqrt{3}$。", "zh_open", "2\\sqrt{3}", None, "2\\sqrt{3}", C),
    ("答：小勇第二次拍了68下。", "zh_open", "68", None, "68", C),
    ("答：这条鱼24元。", "zh_open", "24", None, "24", C),
    ("答: 二年级有92人去郊游.", "zh_open", "92", None, "92", C),
    # --- full-width punctuation and parentheses
    ("答案为（C）。", "zh_choice", "C", None, "C", C),
    ("故选：（B）", "zh_choice", "B", None, "B", C),
    ("答案是：Ｄ", "zh_choice", "D", None, "D", C),
    ("所以选（A），因为其余选项都不满足。", "zh_choice", "A", None, "A", C),
    ("答案为 C，理由如上。", "zh_choice", "C", None, "C", C),
    ("答案是：$x=3$，经检验成立。", "zh_open", "3", None, "x=3", C),
    ("答案为１２", "zh_open", "12", None, "12", C),
    # --- Chinese units and counters after a number
    ("答案是 12 元", "zh_open", "12", None, "12", C),
    ("答案是12元。", "zh_open", "12", None, "12", C),
    ("共有 36 个。答案是 36 个", "zh_open", "36", None, "36", C),
    ("所以一共需要 45 米", "zh_open", "45", None, "45", C),
    ("\\boxed{45\\text{米}}", "zh_open", "45", None, "45", C),
    ("答案是 8 人", "zh_open", "8", None, "8", C),
    ("答案是 15 天", "zh_open", "15", None, "15", C),
    ("答：还剩 9 页没有看。", "zh_open", "9", None, "9", C),
    ("\\boxed{9页}", "zh_open", "9", None, "9", C),
    ("\\boxed{24}元", "zh_open", "24", None, "24", C),
    ("答案是 3.5 千克", "zh_open", "3.5", None, "3.5", C),
    ("第二次拍了 77-9=68 下", "zh_open", "68", None, "68", C),
    ("所以他还有 30-6=24 元。", "zh_open", "24", None, "24", C),
    # --- boxed letters and boxed option text
    ("\\boxed{B}", "aqua", "B", None, "B", C),
    ("$\\boxed{\\text{(B)}}$", "aqua", "B", None, "\\text{(B)}", C),
    ("\\boxed{(C)}", "multiple_choice", "C", None, "(C)", C),
    ("\\boxed{C}", "zh_choice", "C", None, "C", C),
    ("\\boxed{\\text{C}}", "multiple_choice", "C", None, "\\text{C}", C),
    ("\\boxed{\\textbf{(D)}}", "aqua", "D", None, "\\textbf{(D)}", C),
    ("\\boxed{D: 21}", "aqua", "D", "num", "D: 21", C),
    ("\\boxed{C. 18}", "aqua", "C", "num", "C. 18", C),
    ("\\boxed{ACD}", "zh_choice", "ACD", None, "ACD", C),
    ("\\boxed{A, C, D}", "zh_choice", "ACD", None, "A, C, D", C),
    ("\\boxed{B}, \\boxed{C}", "zh_choice", "BC", None, "B, C", C),
    ("\\boxed{BC}", "zh_choice", "BC", None, "BC", C),
    ("故选：ABD", "zh_choice", "ABD", None, "ABD", C),
    ("故选 A、C", "zh_choice", "AC", None, "AC", C),
    # --- English anchors and phrasings
    ("The answer is (D).", "aqua", "D", None, "D", C),
    ("The answer is D.", "aqua", "D", None, "D", C),
    ("Therefore, the answer is (A) 12.", "aqua", "A", "num", "A", C),
    ("Answer: Option C", "aqua", "C", None, "C", C),
    ("Answer: C", "multiple_choice", "C", None, "C", C),
    ("Answer: (B)", "multiple_choice", "B", None, "B", C),
    ("The correct answer is D", "aqua", "D", None, "D", C),
    ("so the correct answer D", "aqua", "D", None, "D", C),
    ("The correct option is (E).", "aqua", "E", None, "E", C),
    ("The final answer is $\\boxed{E}$", "aqua", "E", None, "E", C),
    ("Hence option B is correct.", "aqua", "B", None, "B", C),
    ("Answer choice E", "aqua", "E", None, "E", C),
    ("ANS:D", "aqua", "D", None, "D", C),
    ("The Answer is, B.", "aqua", "B", None, "B", C),
    ("the answer is option D) 61.", "aqua", "D", None, "D", C),
    # --- a bare final letter line
    ("So x = 15.\nB", "aqua", "B", None, "B", C),
    ("Checking each option, only one fits.\n(C)", "multiple_choice", "C", None, "C", C),
    ("We solve the system.\nA.", "multiple_choice", "A", None, "A", C),
    ("B", "aqua", "B", None, "B", C),
    ("(E)", "aqua", "E", None, "E", C),
    ("C", "zh_choice", "C", None, "C", C),
    # --- the option's text or value instead of its letter, graded by the row's options
    ("\\boxed{15}", "aqua", "B", "num", "15", C),
    ("The answer is 21.", "aqua", "D", "num", "21", C),
    ("\\boxed{61}", "aqua", "C", "aqua", "61", C),
    ("The answer is $65.", "aqua", "D", "aqua", "65", C),
    ("\\boxed{78.2}", "aqua", "E", "aqua", "78.2", C),
    ("\\boxed{1-i}", "zh_choice", "C", "zh", "1-i", C),
    ("答案是 $1+i$", "zh_choice", "D", "zh", "1+i", C),
    ("\\boxed{\\frac{1}{3}}", "zh_mixed", "B", "frac", "\\frac{1}{3}", C),
    ("\\boxed{\\dfrac{2}{3}}", "zh_mixed", "D", "frac", "\\dfrac{2}{3}", C),
    ("\\boxed{0.5}", "zh_mixed", "C", "frac", "0.5", C),
    ("\\boxed{\\text{a base pair is inserted}}", "multiple_choice", "C", "text",
     "\\text{a base pair is inserted}", C),
    ("\\boxed{\\text{translation stops}}", "multiple_choice", "C", "text", "\\text{translation stops}", W),
    # --- mixed sets: a letter gold reads letters, an open gold reads the answer
    ("故选 C", "zh_mixed", "C", None, "C", C),
    ("\\boxed{C}", "zh_mixed", "C", "frac", "C", C),
    ("\\boxed{\\frac{1}{9}}", "zh_mixed", "\\frac{1}{9}", None, "\\frac{1}{9}", C),
    ("答案是 $(4,0)$", "zh_mixed", "(4,0)", None, "(4,0)", C),
    ("所以 $k=-6$，答案是 $-6$", "zh_mixed", "-6", None, "-6", C),
    ("\\boxed{2(x+2)(x-2)}", "zh_mixed", "2(x+2)(x-2)", None, "2(x+2)(x-2)", C),
    # --- a final choice that differs from an earlier one: the last committed wins
    ("The answer is (B). Wait, let me recheck. The answer is (C).", "aqua", "C", None, "C", C),
    ("答案是 B。再检验一遍，答案是 C", "zh_choice", "C", None, "C", C),
    ("At first (A) looks right, but it fails. Option (D) works.", "aqua", "D", None, "D", C),
    ("\\boxed{A}\n\nRe-examining, the correct answer is (B).", "aqua", "B", None, "B", C),
    ("Let's go through each choice: (A) can never be true. (C) can never be true. "
     "So (B) must be true.", "aqua", "B", None, "B", C),
    # --- English no-anchor care: equation chains, bold digits, last statements
    ("7+2=9", "asdiv", "9", None, "9", C),
    ("6+9=15", "asdiv", "15", None, "15", C),
    ("She has 7 red and 2 green, 7+2=9 apples in all.", "asdiv", "9", None, "9", C),
    ("So in total, he scored 4+5=9 points in the 40 minutes", "gsm8k", "9", None, "9", C),
    ("The profit is $400 000 - $282 000 = $118 000.", "gsm8k", "118000", None, "118000", C),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nIn total 48+24 = <<48+24=72>>72 clips.", "gsm8k",
     "72", None, "72", C),
    ("the answer is therefore $\\mathbf{3 6}$.", "olympiadbench", "36", None, "\\mathbf{3 6}", C),
    ("the answer is $\\mathbf{1 4 4 0 0}$", None, "14400", None, "\\mathbf{1 4 4 0 0}", C),
    ("So the probability is $\\frac{2}{5}$.", "carp_en", "\\frac{2}{5}", None, "\\frac{2}{5}", C),
    ("Therefore, the result is $( - b ) ^ { 2 } - 9 a ^ { 2 } = b ^ { 2 } - 9 a ^ { 2 }$.", "carp_en",
     "b ^ { 2 } - 9 a ^ { 2 }", None, "b ^ { 2 } - 9 a ^ { 2 }", C),
    ("Solving, we get $m = 2$ after solving for $m$.", "carp_en", "2", None, "m = 2", C),
    ("the original expression $= 2017 + 1 = 2018$.", "carp_en", "2018", None, "2018", C),
    ("Therefore, the largest integer value of $x$ is $6$.", "carp_en", "6", None, "6", C),
    ("because there is no xy term in the expanded expression, so 3 - a = 0, a = 3.", "carp_en", "3", None,
     "3", C),  # carp_en: the number stated last, not an earlier span
    ("when $a < 0$ , the original expression $= \\frac { 1 } { a - 1 }$.", "carp_en", "\\frac{1}{a-1}", None,
     "\\frac { 1 } { a - 1 }", C),
    # real reference solutions (dataset idx N): the last step of a list of computations
    ("27/4=6 r3; 3/1=3", "asdiv", "3", None, "3", C),  # asdiv: a remainder, then the step
    ("(2 (hour)*60 (min/hour) + 45 (min))/60 (min/hour)=5 r45; hh:mm=5:45", "asdiv", "5:45", None,
     "5:45", C),
    ("Jessica's annual payment: $1500/month * 12 months/year = $<<1500*12=18000>>18,000/year\n", "gsm8k",
     "18000", None, "18,000", C),  # gsm8k idx 173: not the 18 of "18,000/year"
    ("He can skip 4 class because 10 - 4 = <<10-4=6>>6\n", "gsm8k", "4", None, "6", W),  # gsm8k idx 635
    # --- a rationale naming no letter: its final value, graded through the row's options
    ("Let the number be x\n10x +1 = 3(100,000 + x)\n=> x = 42857.", "aqua", "A", "aqua43", "42857", C),  # aqua idx 43
    ("Rs. 700 = 70,000 paise\n70,000/175 = 400", "aqua", "C", "aqua50", "400", C),  # idx 50
    ("Avg speed = total distance/total time\n=4 1/3 km/h", "aqua", "A", "aqua130", "4 1/3", C),  # idx 130
    ("making a total of 33 seconds.", "aqua", "D", "aqua186", "33", C),  # idx 186
    ("So he needs 3*5 = 15 in all.", "aqua", "B", "num", "15", C),
    # --- word problems: an equation for the unknown is solved, a proportion gives its new term
    ("x:The number; 3*(x+2)=24+x", "asdiv", "9", None, "9", C),
    ("x:The number; (x-6)/13=2", "asdiv", "32", None, "32", C),
    ("(8h)/2=32", "asdiv", "8", None, "8", C),
    ("x:The number of Ben's cards at first; 20*2=x+3", "asdiv", "37", None, "37", C),
    ("Let x be the hours.\n2.5x = 10", "gsm8k", "4", None, "4", C),
    ("2:3=14:21", "asdiv", "21", None, "21", C),
    ("7:8=42:48", "asdiv", "48", None, "48", C),
    ("15:18=5:6", "asdiv", "5:6", None, "5:6", C),  # a ratio reduced to lowest terms stays a ratio
    ("7+43=50; 7:50", "asdiv", "7:50", None, "7:50", C),  # asdiv idx 1141: the last step is the answer
    ("3200 (m)*3=9600 m; 9600/1000 (m/km) = 9.6 (km)", "asdiv", "9.6", None, "9.6", C),  # asdiv idx 1096

    # ===== near-miss negatives: never a false positive =====
    # --- a wrong letter
    ("故选：B", "zh_choice", "C", None, "B", W),
    ("所以选D", "zh_choice", "A", None, "D", W),
    ("答案是 C", "zh_choice", "B", None, "C", W),
    ("答案为（A）。", "zh_choice", "D", None, "A", W),
    ("The answer is (D).", "aqua", "C", None, "D", W),
    ("Answer: Option C", "aqua", "B", None, "C", W),
    ("\\boxed{\\text{(B)}}", "aqua", "A", None, "\\text{(B)}", W),
    ("\\boxed{E}", "aqua", "D", None, "E", W),
    ("So x = 15.\nB", "aqua", "C", None, "B", W),
    ("The correct answer is A", "multiple_choice", "B", None, "A", W),
    # --- a wrong letter whose option text holds the gold's number
    ("\\boxed{D: 21}", "aqua", "B", "num", "D: 21", W),
    ("The answer is (A) 15.", "aqua", "B", "num", "A", W),
    ("故选 C，即 $-1+i$", "zh_choice", "B", "zh", "C", W),
    ("Answer: (C) 61", "aqua", "B", "aqua", "C", W),
    # --- a letter mentioned earlier, then another committed
    ("The answer is (B). Wait, let me recheck. The answer is (C).", "aqua", "B", None, "C", W),
    ("答案是 B。再检验一遍，答案是 C", "zh_choice", "B", None, "C", W),
    ("Option (A) is tempting, but the answer is (D).", "aqua", "A", None, "D", W),
    ("We first rule out (B) and (C).\nThe answer is (E).", "aqua", "B", None, "E", W),
    ("选项B错误，故选D", "zh_choice", "B", None, "D", W),
    ("\\boxed{A}\n\nRe-examining, the correct answer is (B).", "aqua", "A", None, "B", W),
    # --- the option text (or value) of another choice
    ("\\boxed{18}", "aqua", "B", "num", "18", W),
    ("The answer is 24.", "aqua", "A", "num", "24", W),
    ("\\boxed{35}", "aqua", "C", "aqua", "35", W),
    ("\\boxed{-1+i}", "zh_choice", "C", "zh", "-1+i", W),
    ("答案是 $1-i$", "zh_choice", "D", "zh", "1-i", W),
    ("\\boxed{\\frac{1}{2}}", "zh_mixed", "B", "frac", "\\frac{1}{2}", W),
    ("\\boxed{0.25}", "zh_mixed", "C", "frac", "0.25", W),
    # --- a value no option has, or that two options share
    ("\\boxed{16}", "aqua", "B", "num", "16", W),
    ("\\boxed{4}", "aqua", "A", "dup", "4", W),
    ("\\boxed{15}", "aqua", "B", None, "15", W),  # no options given: a value never equals a letter
    # --- two letters offered, none committed
    ("The answer is (D) or (E).", "aqua", "D", None, None, N),
    ("The answer is (D) or (E).", "aqua", "E", None, None, N),
    ("It is either option B or C.", "aqua", "B", None, None, N),
    ("It could be (A) or (B)", "aqua", "A", None, None, N),
    ("答案是 B 或 C", "zh_choice", "B", None, None, N),
    # --- multi-select: a subset or a superset is wrong
    ("故选 AC", "zh_choice", "ACD", None, "AC", W),
    ("\\boxed{ABCD}", "zh_choice", "ABD", None, "ABCD", W),
    ("\\boxed{B}", "zh_choice", "BC", None, "B", W),
    # --- Chinese units on a different number
    ("答：第二天卖了 15 个，比第一天多 3 个。", "zh_open", "3", None, "15", W),
    ("答案是 30 元，剩 6 元", "zh_open", "24", None, "30", W),
    ("一共 84 人，答案是 92 人", "zh_open", "84", None, "92", W),
    ("答：还剩 90 页。", "zh_open", "9", None, "90", W),
    ("答案是 68 下", "zh_open", "77", None, "68", W),
    ("所以他还有 30-6=24 元。", "zh_open", "30", None, "24", W),
    ("答案为 3 米", "zh_open", "30", None, "3", W),
    # --- English no-anchor care: the final value, never an earlier number
    ("7+2=9", "asdiv", "7", None, "9", W),
    ("She has 7 red and 2 green, 7+2=9 apples in all.", "asdiv", "2", None, "9", W),
    ("So in total, he scored 4+5=9 points in the 40 minutes", "gsm8k", "40", None, "9", W),
    ("the answer is therefore $\\mathbf{3 6}$.", "olympiadbench", "3", None, "\\mathbf{3 6}", W),
    ("So the probability is $\\frac{2}{5}$.", "carp_en", "\\frac{5}{2}", None, "\\frac{2}{5}", W),
    ("So the probability is $\\frac{2}{5}$.", None, "\\frac{2}{5}", None, None, N),  # default: no guess
    ("so the value is $\\mathbf{3 6}$", "olympiadbench", "36", None, None, N),  # no anchor: no guess
    # --- a rationale naming no letter: a value of another option, of no option, of two
    ("Rs. 700 = 70,000 paise\n70,000/175 = 400", "aqua", "A", "aqua50", "400", W),
    ("So he needs 3*5 = 15 in all.", "aqua", "C", "num", "15", W),
    ("So he needs 4*4 = 16 in all.", "aqua", "B", "num", "16", W),
    ("So she has 2*2 = 4 left.", "aqua", "A", "dup", "4", W),
    ("Now he must add $20 to each item, which is 25% of $80.", "aqua", "C", "aqua70", "80", W),  # aqua idx 70: the last number
    # --- word problems: an equation or proportion read for its unknown, never an earlier number
    ("x:The number; 3*(x+2)=24+x", "asdiv", "24", None, "9", W),
    ("2:3=14:21", "asdiv", "14", None, "21", W),
    ("15:18=5:6", "asdiv", "6", None, "5:6", W),
    ("868/6=144 r4", "asdiv", "4", None, "144 r4", W),  # a remainder form is not solved for r
    ("7+43=50; 7:50", "asdiv", "50", None, "7:50", W),
    ("3200 (m)*3=9600 m; 9600/1000 (m/km) = 9.6 (km)", "asdiv", "9600", None, "9.6", W),
    ("So the total is = 3(x+1)", "gsm8k", "3", None, "1", W),  # "(x+1)" goes on: not a unit
    ("x+y=8; 10x+y=53", "asdiv", "8", None, "10x+y=53", W),  # two unknowns: nothing solved
    ("x:The number; x*x=16", "asdiv", "4", None, "16", W),  # not linear: nothing solved
    # --- a letter never appears where the policy has no choices
    ("The answer is (D).", "math500", "4", None, "(D)", W),
    ("no letter commits here, only prose", "aqua", "A", None, None, N),
]


@pytest.mark.parametrize("response,dataset,gold,options,answer,status", CASES)
def test_choice_and_chinese_answers(response, dataset, gold, options, answer, status):
    grade = grade_response(response, gold, dataset=dataset, choices=OPTIONS.get(options))
    assert grade.answer == answer
    if dataset != "zh_mixed":  # a mixed set's rows read letters only where the gold is one
        assert extract_answer(response, dataset=dataset) == answer
    assert grade.status == (status or "wrong")


def test_case_table_size():
    negatives = [case for case in CASES if case[5] != C]
    assert len(CASES) >= 150 and len(negatives) >= 40


# --- options from Problem.choices, mappings and question text


@pytest.mark.parametrize("choices,expected", [
    (("(A) 12", "(B) 15"), {"A": "12", "B": "15"}),
    (("A)21", "B)35"), {"A": "21", "B": "35"}),
    (["3", "4", "5"], {"A": "3", "B": "4", "C": "5"}),  # a bare list, in letter order
    ({"A": "$1$", "(B)": "2"}, {"A": "$1$", "B": "2"}),
    (None, {}),
])
def test_options_map(choices, expected):
    assert options_map(choices) == expected


@pytest.mark.parametrize("question,expected", [
    ("Find x.\nAnswer Choices: (A) $61 (B) $65 (C) $67.40 (D) $70 (E) $78.20",
     {"A": "$61", "B": "$65", "C": "$67.40", "D": "$70", "E": "$78.20"}),
    ("则 $a=( )\n选项: (A) $-1$ (B) 1 (C) $-3$ (D) 3", {"A": "$-1$", "B": "1", "C": "$-3$", "D": "3"}),
    ("则k的值为()\nA.-3  B.3  C.-6  D.6", {"A": "-3", "B": "3", "C": "-6", "D": "6"}),
    ("则 $z =$ ( )\n\nA. $-1 - i$\nB. $-1 + i$\nC. $1 - i$\nD. $1 + i$",
     {"A": "$-1 - i$", "B": "$-1 + i$", "C": "$1 - i$", "D": "$1 + i$"}),
    ("在四棱雉 P-A B C D 中, 高为 ( ). A. 1 B. 2 C. \\sqrt{2} D. \\sqrt{3}",
     {"A": "1", "B": "2", "C": "\\sqrt{2}", "D": "\\sqrt{3}"}),
    ("What is 6*7?", {}),
])
def test_options_in_text(question, expected):
    assert options_in_text(question) == expected


def test_grade_batch_takes_choices_items():
    items = [("\\boxed{15}", "B", "aqua", OPTIONS["num"]), ("\\boxed{18}", "B", "aqua", OPTIONS["num"]),
             ("\\boxed{B}", "B", "aqua"), ("\\boxed{5}", "5")]
    assert [g.status for g in grade_batch(items, timeout=5.0)] == [C, W, C, C]


def test_runs_grade_committed_answers_by_options():
    from qwen_math.runs.grading import grade_committed_answer

    assert grade_committed_answer(("15", "B", "aqua", OPTIONS["num"]), 5.0).status == C
    assert grade_committed_answer(("18", "B", "aqua", OPTIONS["num"]), 5.0).status == W
    assert grade_committed_answer(("\\text{(B)}", "B", "aqua", ()), 5.0).status == C
    assert grade_committed_answer(("72", "72", "gsm8k"), 5.0).status == C


# --- the import direction: eval.extract -> eval.datasets -> eval.policies, never back


def test_datasets_do_not_import_the_extractor():
    import subprocess
    import sys

    code = "import sys, eval.datasets; print('eval.extract' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
