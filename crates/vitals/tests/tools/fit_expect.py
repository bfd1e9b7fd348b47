"""What Vitals should store from a FIT file, worked out independently with Garmin's own
decoder (garmin-fit-sdk on PyPI) and the mapping docs/sources.md describes. Prints JSON:
{"device": ..., "firmware": ..., "samples": [[metric, time_ms, value], ...], "sleep": [[stage, start_ms, end_ms], ...]}

    python3 fit_expect.py <file.fit>
"""
import json
import sys

from garmin_fit_sdk import Decoder, Profile, Stream

FIT_EPOCH_S = 631065600
NUM = Profile["mesg_num"]


def ms(dt):
    return int(dt.timestamp() * 1000)


def main(path):
    messages = []
    decoder = Decoder(Stream.from_file(path))
    _, errors = decoder.read(mesg_listener=lambda num, m: messages.append((num, m)))
    if errors:
        raise SystemExit(f"garmin-fit-sdk could not read {path}: {errors}")
    out = {"device": None, "firmware": None, "samples": [], "sleep": []}
    last = None  # the last full timestamp, ms
    beat = None  # where the next beat-to-beat interval starts, ms
    steps = {}
    sleep = None  # (start, level, last)

    def add(metric, t, v):
        out["samples"].append([metric, t, v])

    def close(end):
        nonlocal sleep
        if sleep:
            start, level, prev = sleep
            out["sleep"].append([level, start, end if end is not None else prev + 60000])
            sleep = None

    for num, m in messages:
        t = ms(m["timestamp"]) if "timestamp" in m else None
        if t is None and "timestamp_16" in m and last is not None:
            last_fit = last // 1000 - FIT_EPOCH_S
            t = (last_fit + ((m["timestamp_16"] - (last_fit & 0xFFFF)) & 0xFFFF) + FIT_EPOCH_S) * 1000
        if "timestamp" in m:
            last = t
            beat = t if beat is None else beat
        if num == NUM["FILE_ID"]:
            out["device"] = f"{m['manufacturer']}-{m['serial_number']}"
            if "time_created" in m:
                last = last or ms(m["time_created"])
                beat = beat or ms(m["time_created"])
        elif num == NUM["DEVICE_INFO"]:
            creator = m.get("device_index", "creator") in ("creator", 0)
            if creator and out["firmware"] is None and "software_version" in m:
                out["firmware"] = str(m["software_version"])
        elif num in (NUM["RECORD"], NUM["MONITORING"]):
            if m.get("heart_rate"):
                add("heart_rate", t, m["heart_rate"])
            if num == NUM["MONITORING"] and "steps" in m:
                before = steps.get(m.get("activity_type"), 0)
                steps[m.get("activity_type")] = m["steps"]
                step = m["steps"] - before if m["steps"] >= before else m["steps"]
                if step > 0:
                    add("step_count", t, step)
        elif num == NUM["MONITORING_HR_DATA"]:
            add("resting_heart_rate", t, m["resting_heart_rate"])
        elif num == NUM["STRESS_LEVEL"]:
            if m["stress_level_value"] >= 0:
                add("stress_level", ms(m["stress_level_time"]), m["stress_level_value"])
        elif num == NUM["SPO2_DATA"]:
            add("spo2", t, m["reading_spo2"])
        elif num == NUM["RESPIRATION_RATE"]:
            add("respiratory_rate", t, m["respiration_rate"])
        elif num == NUM["HRV"]:
            for s in m["time"]:
                beat += round(s * 1000)
                add("rr_interval", beat, round(s * 1000))
        elif num == NUM["SLEEP_LEVEL"]:
            if sleep and sleep[1] == m["sleep_level"]:
                sleep = (sleep[0], sleep[1], t)
            else:
                close(t)
                sleep = (t, m["sleep_level"], t)
    close(None)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
