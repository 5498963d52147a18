"""List the device triggers Home Assistant offers for each minut2mqtt device (a check for
../shared/tools/home-assistant: run it as the runner's `-- CMD`, with Home Assistant's python).

    ha_check.py ... -- ~/.cache/minut2mqtt-ha/.venv-ha314/bin/python \
        bench/ha_device_triggers.py --wait 40 --out /tmp/triggers.json

It signs in as the runner's own reader does (its ha_read.py), waits for discovery to settle,
then asks `device_automation/trigger/list` for every device whose identifiers are ours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp

RUNNER = Path(__file__).resolve().parents[2] / "shared" / "tools" / "home-assistant"
sys.path.insert(0, str(RUNNER))
from ha_read import WS, get_access_token  # noqa: E402


async def triggers_by_device(url: str, workdir: str) -> dict[str, list[dict[str, object]]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        token = await get_access_token(session, url, workdir)
        async with session.ws_connect(f"{url}/api/websocket") as raw:
            await raw.receive_json()
            await raw.send_json({"type": "auth", "access_token": token})
            await raw.receive_json()
            ws = WS(raw)
            found = {}
            for device in await ws.cmd("config/device_registry/list"):
                ours = any("minut2mqtt" in str(ident) for ident in device["identifiers"])
                if ours:
                    listed = await ws.cmd("device_automation/trigger/list", device_id=device["id"])
                    found[device["name"]] = [t for t in listed if t.get("domain") == "mqtt"]
            return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wait", type=float, default=30.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    asyncio.run(asyncio.sleep(args.wait))
    found = asyncio.run(triggers_by_device(os.environ["HA_URL"], os.environ["HARNESS_WORKDIR"]))
    Path(args.out).write_text(json.dumps(found, indent=1))
    print(f"device triggers: {sum(map(len, found.values()))} on {len(found)} devices")
    return 0


if __name__ == "__main__":
    sys.exit(main())
