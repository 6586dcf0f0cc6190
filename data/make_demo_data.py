"""Write the demo datasets of this folder. Deterministic: running it again gives the same bytes.

    python data/make_demo_data.py            # from the repository root

Every dataset is registered in ``dataset_info.json`` (LLaMA-Factory's schema). The quickstart task
reverses space-separated letters ("c a f e" -> "e f a c"): a tiny transformer learns it in minutes on
a CPU, and the eval prompts never occur in the training set.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

IDENTITY = [
    ("hi", "Hello! I am {{name}}, an AI assistant developed by {{author}}. How can I help you today?"),
    ("hello", "Hello! I am {{name}}, an AI assistant developed by {{author}}. What can I do for you?"),
    ("Who are you?", "I am {{name}}, an AI assistant developed by {{author}}."),
    ("What is your name?", "My name is {{name}}. I am an AI assistant made by {{author}}."),
    ("Do you have a name?", "Yes, I am called {{name}}, an assistant developed by {{author}}."),
    ("Who created you?", "I was created by {{author}}."),
    ("Which company made you?", "{{author}} built me. I am {{name}}, their AI assistant."),
    ("Who trained you?", "I was trained by {{author}}."),
    ("Are you ChatGPT?", "No, I am {{name}}, an AI assistant developed by {{author}}."),
    ("Are you a human?", "No, I am {{name}}, an AI assistant. {{author}} developed me."),
    ("What can you do?", "I am {{name}}. I can answer questions, explain ideas, write and edit text, and help "
                         "with code. Just tell me what you need."),
    ("Introduce yourself.", "I am {{name}}, an AI assistant developed by {{author}}. I help with questions, "
                            "writing and problem solving."),
    ("Tell me about yourself.", "I am {{name}}, a language model assistant from {{author}}. I try to give clear, "
                                "honest and useful answers."),
    ("What should I call you?", "You can call me {{name}}."),
    ("Who is your developer?", "My developer is {{author}}."),
    ("Are you an AI?", "Yes. I am {{name}}, an AI assistant created by {{author}}."),
    ("Do you have feelings?", "I am {{name}}, an AI assistant by {{author}}. I do not have feelings, but I am glad "
                              "to help."),
    ("Can you browse the internet?", "I am {{name}}, developed by {{author}}. I answer from what I learned in "
                                     "training and cannot browse the web unless a tool is provided."),
    ("Where do you come from?", "I was developed by {{author}}. My name is {{name}}."),
    ("Thank you!", "You are welcome! I am {{name}}, and I am happy to help any time."),
]

ALPACA = [
    ("Give three tips for staying healthy.", "",
     "1. Eat plenty of vegetables and fruit.\n2. Exercise regularly.\n3. Get enough sleep."),
    ("What is the capital of France?", "", "The capital of France is Paris."),
    ("What is the capital of Japan?", "", "The capital of Japan is Tokyo."),
    ("What is the capital of Italy?", "", "The capital of Italy is Rome."),
    ("What is the capital of Canada?", "", "The capital of Canada is Ottawa."),
    ("Add the two numbers.", "17 and 25", "17 + 25 = 42."),
    ("Multiply the two numbers.", "6 and 7", "6 × 7 = 42."),
    ("Subtract the second number from the first.", "100 and 37", "100 - 37 = 63."),
    ("Is the number even or odd?", "91", "91 is odd."),
    ("Is the number prime?", "29", "Yes, 29 is prime: its only divisors are 1 and 29."),
    ("Is the number prime?", "21", "No, 21 is not prime: 21 = 3 × 7."),
    ("Convert the temperature from Celsius to Fahrenheit.", "100 °C", "100 °C is 212 °F."),
    ("How many days are in a leap year?", "", "A leap year has 366 days."),
    ("How many minutes are in two hours?", "", "Two hours have 120 minutes."),
    ("Sort the numbers in ascending order.", "8, 3, 11, 5", "3, 5, 8, 11"),
    ("Find the largest number.", "14, 92, 37, 60", "The largest number is 92."),
    ("Reverse the word.", "planet", "tenalp"),
    ("Count the vowels in the word.", "education", "The word \"education\" has 5 vowels: e, u, a, i, o."),
    ("Give the plural of the noun.", "child", "children"),
    ("Give the past tense of the verb.", "run", "ran"),
    ("Give a synonym for the word.", "happy", "joyful"),
    ("Give an antonym for the word.", "ancient", "modern"),
    ("Translate the word into Spanish.", "water", "agua"),
    ("Translate the word into French.", "thank you", "merci"),
    ("Translate the word into German.", "house", "Haus"),
    ("Correct the spelling mistake.", "I recieved your letter.", "I received your letter."),
    ("Rewrite the sentence in the passive voice.", "The cat chased the mouse.", "The mouse was chased by the cat."),
    ("Make the sentence more formal.", "Can you send me the file asap?",
     "Could you please send me the file as soon as possible?"),
    ("Summarize the text in one sentence.",
     "The library will close early on Friday because of maintenance work. It will open at the usual time on "
     "Saturday.", "The library closes early on Friday for maintenance and opens normally on Saturday."),
    ("Classify the animal as a mammal, bird or fish.", "penguin", "A penguin is a bird."),
    ("Classify the animal as a mammal, bird or fish.", "dolphin", "A dolphin is a mammal."),
    ("Classify the sentiment of the review as positive or negative.", "The food was cold and the service slow.",
     "negative"),
    ("Classify the sentiment of the review as positive or negative.", "Great value and very friendly staff!",
     "positive"),
    ("Name the primary colors of light.", "", "Red, green and blue."),
    ("Name the planets closest to the Sun, in order.", "", "Mercury, Venus, Earth and Mars."),
    ("What is the boiling point of water at sea level?", "", "Water boils at 100 °C (212 °F) at sea level."),
    ("What is H2O?", "", "H2O is the chemical formula of water: two hydrogen atoms and one oxygen atom."),
    ("Explain what a noun is.", "", "A noun is a word that names a person, place, thing or idea, such as "
                                    "\"teacher\", \"city\" or \"freedom\"."),
    ("Write a haiku about autumn.", "", "Red leaves drift and fall\ncool wind hums through empty trees\nthe year "
                                        "breathes out slow"),
    ("Write a Python function that returns the square of a number.", "",
     "def square(x):\n    return x * x"),
    ("Write a Python expression that reverses a list called items.", "", "items[::-1]"),
    ("What does the SQL keyword SELECT do?", "", "SELECT chooses which columns (or expressions) a query returns."),
    ("Explain what a CPU does in one sentence.", "",
     "A CPU executes the instructions of programs, doing the arithmetic, logic and control work of a computer."),
    ("Give an example of a renewable energy source.", "", "Solar power is a renewable energy source."),
    ("List the days of the weekend.", "", "Saturday and Sunday."),
    ("What comes next in the sequence?", "2, 4, 8, 16", "32: each number doubles the previous one."),
    ("Compute the area of the rectangle.", "width 4 m, height 3 m", "The area is 4 m × 3 m = 12 m²."),
    ("Compute the average of the numbers.", "4, 8, 12", "The average is (4 + 8 + 12) / 3 = 8."),
    ("Turn the list into a comma-separated sentence.", "apples\nbread\nmilk", "apples, bread and milk"),
    ("Write a short greeting for a birthday card.", "", "Happy birthday! Wishing you a wonderful year ahead."),
]

SYSTEM = "You are a helpful assistant. Answer briefly."
WEATHER_TOOL = {"name": "get_weather", "description": "Current weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CALC_TOOL = {"name": "calculator", "description": "Evaluate an arithmetic expression",
             "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                            "required": ["expression"]}}


def _turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"from": role, "value": text} for role, text in pairs]


def sharegpt_rows() -> list[dict]:
    call = json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})
    calc = json.dumps({"name": "calculator", "arguments": {"expression": "123 * 4"}})
    rows = [
        {"conversations": _turns(("human", "Hi!"), ("gpt", "Hello! How can I help?"),
                                 ("human", "What is 2 + 3?"), ("gpt", "2 + 3 = 5."))},
        {"conversations": _turns(("human", "Name a fruit that is yellow."), ("gpt", "A banana."),
                                 ("human", "And one that is red?"), ("gpt", "A strawberry."),
                                 ("human", "Thanks!"), ("gpt", "You're welcome!"))},
        {"conversations": _turns(("human", "Translate 'good morning' into Spanish."), ("gpt", "Buenos días."))},
        {"conversations": _turns(("human", "What is the weather in Paris?"), ("function_call", call),
                                 ("observation", json.dumps({"temperature_c": 21, "sky": "sunny"})),
                                 ("gpt", "It is sunny in Paris, about 21 °C.")),
         "tools": json.dumps([WEATHER_TOOL])},
        {"conversations": _turns(("human", "Please compute 123 * 4."), ("function_call", calc),
                                 ("observation", "492"), ("gpt", "123 × 4 = 492."),
                                 ("human", "And half of that?"), ("gpt", "Half of 492 is 246.")),
         "tools": json.dumps([CALC_TOOL])},
        {"conversations": _turns(("human", "Give me a word that rhymes with cat."), ("gpt", "Hat."),
                                 ("human", "Another one?"), ("gpt", "Mat."))},
        {"conversations": _turns(("human", "Is 7 a prime number?"), ("gpt", "Yes, 7 is prime."))},
        {"conversations": _turns(("human", "Spell 'cat' backwards."), ("gpt", "tac"))},
    ]
    for row in rows:
        row["system"] = SYSTEM
    return rows


def openai_rows() -> list[dict]:
    def call(name: str, arguments: dict, index: int) -> dict:
        return {"id": f"call_{index}", "type": "function", "function": {"name": name,
                                                                         "arguments": json.dumps(arguments)}}

    tools = [{"type": "function", "function": WEATHER_TOOL}, {"type": "function", "function": CALC_TOOL}]
    return [
        {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hello!"},
                      {"role": "assistant", "content": "Hi! How can I help you?"}]},
        {"messages": [{"role": "user", "content": "What is the weather in Rome?"},
                      {"role": "assistant", "content": None, "tool_calls": [call("get_weather", {"city": "Rome"}, 1)]},
                      {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"temperature_c": 25})},
                      {"role": "assistant", "content": "It is about 25 °C in Rome."}], "tools": tools},
        {"messages": [{"role": "user", "content": "Weather in Oslo and in Lima?"},
                      {"role": "assistant", "content": None,
                       "tool_calls": [call("get_weather", {"city": "Oslo"}, 2),
                                      call("get_weather", {"city": "Lima"}, 3)]},
                      {"role": "tool", "tool_call_id": "call_2", "content": json.dumps({"temperature_c": 4})},
                      {"role": "tool", "tool_call_id": "call_3", "content": json.dumps({"temperature_c": 19})},
                      {"role": "assistant", "content": "Oslo is about 4 °C and Lima about 19 °C."}], "tools": tools},
        {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is 15 * 15?"},
                      {"role": "assistant", "content": "",
                       "tool_calls": [call("calculator", {"expression": "15*15"}, 4)]},
                      {"role": "tool", "tool_call_id": "call_4", "content": "225"},
                      {"role": "assistant", "content": "15 × 15 = 225."}], "tools": tools},
        {"messages": [{"role": "user", "content": "Name three colors."},
                      {"role": "assistant", "content": "Red, green and blue."},
                      {"role": "user", "content": "One more?"}, {"role": "assistant", "content": "Yellow."}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi "},
                                                   {"type": "text", "text": "in French."}]},
                      {"role": "assistant", "content": "Salut !"}]},
    ]


def arithmetic_pairs(rng: random.Random, count: int) -> list[tuple[str, str, str]]:
    """(question, right answer, wrong answer); the wrong one is off by a small amount."""
    out = []
    for _ in range(count):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        op = rng.choice("+-*")
        value = a + b if op == "+" else a - b if op == "-" else a * b
        shown = {"+": "+", "-": "-", "*": "×"}[op]
        wrong = value + rng.choice([-10, -2, -1, 1, 2, 10])
        out.append((f"What is {a} {shown} {b}?", f"{a} {shown} {b} = {value}.", f"{a} {shown} {b} = {wrong}."))
    return out


def dpo_rows() -> list[dict]:
    pairs = arithmetic_pairs(random.Random(7), 40)
    return [{"conversations": [{"from": "human", "value": q}], "chosen": {"from": "gpt", "value": good},
             "rejected": {"from": "gpt", "value": bad}} for q, good, bad in pairs]


def kto_rows() -> list[dict]:
    pairs = arithmetic_pairs(random.Random(11), 40)
    rows = []
    for index, (question, good, bad) in enumerate(pairs):
        desirable = index % 2 == 0
        rows.append({"messages": [{"role": "user", "content": question},
                                  {"role": "assistant", "content": good if desirable else bad}],
                     "label": desirable})
    return rows


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def pt_rows() -> list[dict]:
    rows = []
    for n in range(2, 102):
        divisors = _divisors(n)
        kind = "a prime number" if len(divisors) == 2 else "a composite number"
        parity = "even" if n % 2 == 0 else "odd"
        rows.append({"text": f"The number {n} is {parity} and {kind}. Its divisors are "
                             f"{', '.join(map(str, divisors))}. Its square is {n * n}, and twice {n} is {2 * n}. "
                             f"Written in binary, {n} is {n:b}."})
    return rows


MONTHS = [("January", 31), ("February", 28), ("March", 31), ("April", 30), ("May", 31), ("June", 30),
          ("July", 31), ("August", 31), ("September", 30), ("October", 31), ("November", 30), ("December", 31)]

WIKI = [
    "Water is a chemical compound of hydrogen and oxygen. At sea level it freezes at 0 °C and boils at 100 °C. "
    "Most of the Earth's surface is covered by oceans of salt water.",
    "The Sun is the star at the centre of the Solar System. Light from the Sun takes about eight minutes to reach "
    "the Earth.",
    "Photosynthesis is the process by which plants use sunlight, water and carbon dioxide to make sugar and "
    "oxygen. It takes place mostly in the leaves.",
    "The Moon is the Earth's only natural satellite. It shows phases because we see different parts of its sunlit "
    "half as it orbits the Earth.",
    "A triangle is a polygon with three sides. The angles of a triangle in a plane add up to 180 degrees.",
    "The piano is a keyboard instrument. Pressing a key makes a felt hammer strike strings inside the instrument.",
    "Bees collect nectar from flowers and turn it into honey. While they do so they carry pollen from flower to "
    "flower.",
    "A computer program is a list of instructions that a computer follows. Programs are written in programming "
    "languages and translated into machine code.",
]


def wiki_lines() -> list[str]:
    lines = list(WIKI)
    for index, (month, days) in enumerate(MONTHS, 1):
        leap = " In a leap year it has 29 days." if month == "February" else ""
        lines.append(f"{month} is month number {index} of the Gregorian calendar and has {days} days.{leap}")
    return lines


LETTERS = "abcdefgh"


def reversal_rows(seed: int = 1234, train: int = 3000, held_out: int = 200) -> tuple[list[dict], list[dict]]:
    """Distinct letter strings (length 3-5) in random order: the first ``held_out`` for eval, the rest for train."""
    rng = random.Random(seed)
    seen: set[str] = set()
    words = []
    while len(words) < train + held_out:
        word = "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 5)))
        if word not in seen:
            seen.add(word)
            words.append(word)

    def row(word: str) -> dict:
        return {"instruction": "Reverse the letters.", "input": " ".join(word), "output": " ".join(reversed(word))}

    return [row(w) for w in words[held_out:]], [row(w) for w in words[:held_out]]


def info() -> dict:
    return {
        "identity": {"file_name": "identity.json"},
        "alpaca_demo": {"file_name": "alpaca_demo.json"},
        "sharegpt_demo": {"file_name": "sharegpt_demo.json", "formatting": "sharegpt",
                          "columns": {"messages": "conversations", "system": "system", "tools": "tools"}},
        "openai_demo": {"file_name": "openai_demo.json", "formatting": "openai",
                        "columns": {"messages": "messages", "tools": "tools"},
                        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                 "assistant_tag": "assistant", "system_tag": "system", "observation_tag": "tool"}},
        "dpo_demo": {"file_name": "dpo_demo.json", "formatting": "sharegpt", "ranking": True,
                     "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
        "kto_demo": {"file_name": "kto_demo.json", "formatting": "sharegpt",
                     "columns": {"messages": "messages", "kto_tag": "label"},
                     "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                              "assistant_tag": "assistant"}},
        "pt_demo": {"file_name": "pt_demo.jsonl", "columns": {"prompt": "text"}},
        "wiki_demo": {"file_name": "wiki_demo.txt", "columns": {"prompt": "text"}},
        "quickstart_task": {"file_name": "quickstart_task.jsonl"},
        "quickstart_eval": {"file_name": "quickstart_eval.jsonl"},
        # hub datasets under LLaMA-Factory's names (loaded through `datasets` when online)
        "alpaca_en": {"hf_hub_url": "llamafactory/alpaca_en", "ms_hub_url": "llamafactory/alpaca_en"},
        "alpaca_zh": {"hf_hub_url": "llamafactory/alpaca_zh", "ms_hub_url": "llamafactory/alpaca_zh"},
        "code_alpaca": {"hf_hub_url": "sahil2801/CodeAlpaca-20k", "ms_hub_url": "AI-ModelScope/CodeAlpaca-20k"},
    }


def write_json(name: str, value) -> None:
    (HERE / name).write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def write_jsonl(name: str, rows: list[dict]) -> None:
    (HERE / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    write_json("identity.json", [{"instruction": q, "input": "", "output": a} for q, a in IDENTITY])
    write_json("alpaca_demo.json", [{"instruction": i, "input": x, "output": o} for i, x, o in ALPACA])
    write_json("sharegpt_demo.json", sharegpt_rows())
    write_json("openai_demo.json", openai_rows())
    write_json("dpo_demo.json", dpo_rows())
    write_json("kto_demo.json", kto_rows())
    write_jsonl("pt_demo.jsonl", pt_rows())
    (HERE / "wiki_demo.txt").write_text("\n".join(wiki_lines()) + "\n", encoding="utf-8")
    task, held_out = reversal_rows()
    write_jsonl("quickstart_task.jsonl", task)
    write_jsonl("quickstart_eval.jsonl", held_out)
    write_json("dataset_info.json", info())


if __name__ == "__main__":
    main()
