"""Independent reference for docs/flight-spec.md (bucketing, sampling, arms), used to write the
expected values in this folder. Run: python3 reference.py (it rewrites the *.json cases)."""
import hashlib, json

def truncated_hash(x):
    text = json.dumps(x, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]

def key(f):
    return "%012x" % int(f * (2**48 - 1))

def in_range(h, ge, lt):
    return key(ge) <= h < key(lt)

def ratio_sample(x, ratios):
    h, total, cum = truncated_hash(x), sum(ratios), 0
    for i, r in enumerate(ratios):
        cum += r
        if h <= key(cum / total):
            return i
    return len(ratios) - 1

PEOPLE = [
    {"personid": "299eed1e-be6d-457d-9e53-da7b1a03f10d", "os": "linux", "channel": "beta", "locale": "en-US", "appversion": "128.0b3"},
    {"personid": "c590d3f5-fe9d-4820-97c9-f403535dd306", "os": "win32", "channel": "release", "locale": "de-AT", "appversion": "121.0.1"},
    {"personid": "542213c0-9aef-47eb-bc6b-3b8529736ba2", "os": "Darwin", "channel": "nightly", "locale": "zh-TW", "appversion": "133.0a1"},
    {"personid": "ünïcødé-👩‍🚀-人", "os": "android", "channel": "beta", "locale": "en", "appversion": "130"},
    {"personid": "Ω", "os": "ios", "channel": "BETA", "locale": "EN-gb", "appversion": "2"},
]
for i in range(40):
    PEOPLE.append({"personid": "person-%03d" % i, "os": "linux", "channel": "beta", "locale": "en-US", "appversion": "128.0"})

def case(name, flight, now, eligible):
    people = []
    for p in PEOPLE:
        rd = flight.get("randomDeploy")
        keyname = (rd or {}).get("keyname") or flight["studyname"]
        bucket = truncated_hash([p["personid"], keyname])
        sampled = True if rd is None else in_range(bucket, rd["ge"], rd["lt"])
        arms = flight.get("arms")
        arm = None
        if arms:
            idx = ratio_sample("experimentmanager-%s-%s-branch" % (p["personid"], flight["studyname"]), [a["ratio"] for a in arms])
            arm = arms[idx]["name"]
        el = eligible(p)
        people.append({"person": p, "expect": {"bucket": bucket, "sampled": sampled, "arm": arm, "eligible": el,
                                                "enrolled": el and sampled and not flight.get("kill", False)}})
    with open(name + ".json", "w") as f:
        json.dump({"flight": flight, "now": now, "people": people}, f, ensure_ascii=False, indent=1)
        f.write("\n")

plan = [{"action": "log", "text": "x"}]
case("beta-linux-5pct", {"studyname": "beta-linux-5pct", "author": "a", "description": "d",
     "filter": {"channels": ["beta"], "oses": ["linux"]},
     "randomDeploy": {"ge": 0, "lt": 0.05}, "flightplan": plan}, "2026-12-01",
     lambda p: p["channel"].lower() == "beta" and p["os"] == "linux")
case("shared-key-half", {"studyname": "shared-key-half", "author": "a", "description": "d",
     "randomDeploy": {"keyname": "shared", "ge": 0.25, "lt": 0.75},
     "arms": [{"name": "control", "ratio": 1}, {"name": "treatment", "ratio": 2}], "flightplan": plan}, 0,
     lambda p: True)
case("locales-versions", {"studyname": "locales-versions", "author": "a", "description": "d",
     "filter": {"locales": ["en", "de-AT"], "versions": ">=128"},
     "arms": [{"name": "a", "ratio": 1}, {"name": "b", "ratio": 1}, {"name": "c", "ratio": 1}], "flightplan": plan}, "2026-12-01T00:00:00Z",
     lambda p: (p["locale"].lower() == "de-at" or p["locale"].lower().split("-")[0] == "en")
               and int("".join(c for c in p["appversion"].split(".")[0] if c.isdigit())) >= 128)
case("killed", {"studyname": "killed", "author": "a", "description": "d", "kill": True, "flightplan": plan}, 0, lambda p: True)
