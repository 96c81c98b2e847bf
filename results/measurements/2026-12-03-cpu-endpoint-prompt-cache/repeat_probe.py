import time, httpx, random
from backends.openai_endpoint import text_prompt
random.seed(1)
V=151936
p = text_prompt([random.randrange(1000, 100000) for _ in range(512)], V)
q = text_prompt([random.randrange(1000, 100000) for _ in range(512)], V)
c = httpx.Client(timeout=120, trust_env=False)
m = c.get("http://127.0.0.1:8791/v1/models").json()["data"][0]["id"]
for name, prompt in [("A", p), ("A", p), ("B", q), ("A", p), ("B", q), ("B", q)]:
    t = time.perf_counter()
    r = c.post("http://127.0.0.1:8791/v1/completions", json={"model": m, "prompt": prompt, "max_tokens": 1, "temperature": 0})
    print(name, round(time.perf_counter() - t, 3), r.json().get("usage"))
