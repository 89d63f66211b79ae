// Drives the dashboard page in headless Chromium (Debian's /usr/bin/chromium
// through playwright-core) and checks what a person would see: charts with
// points and anomaly marks, an insight feed whose statuses reach `final`,
// and a proof that the page verifies by itself against the chain.
//
//   node tests/js/dashboard-check.mjs <http-url> <artifact-dir> <points> <more>
//
// <points> samples of machine_temperature are published while the page
// opens (some before it, which it must read as history) and <more> after
// the node restarts; the chart must end up with each exactly once.
//
// It talks with the Rust test (tests/it/dashboard.rs) by lines:
//   stdout "ready"     the page is live: publish the events now
//   stdout "restart"   restart the node; then stdin "restarted" is expected,
//                      after which <more> further samples are published
//   stdout "done {...}" every check passed (a JSON summary follows)
// Any failure exits non-zero with the reason on stderr.

import { createRequire } from "node:module";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const CHROMIUM = "/usr/bin/chromium";
const HINT = "run scripts/services.sh up";
// Keeps Chromium off every network but loopback.
const CHROMIUM_FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
  "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync",
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
];
const METRIC = "machine_temperature";
// Long enough for the page to refresh its figures before the screenshot.
const HEALTH_REFRESH_MS = 5500;

const [baseUrl, artifactDir, pointsArg, moreArg] = process.argv.slice(2);
const expectedPoints = Number(pointsArg);
const morePoints = Number(moreArg);

/** A failed check: its message is the whole story, no stack needed. */
class CheckFailed extends Error {}

function fail(message) {
  throw new CheckFailed(message);
}

const require = createRequire(new URL("../../contracts/package.json", import.meta.url));

/** Playwright and the reference implementations, or a failure saying how to get them. */
function prerequisites() {
  if (!baseUrl || !artifactDir || !(expectedPoints > 0) || !(morePoints >= 0)) {
    fail("usage: dashboard-check.mjs <http-url> <artifact-dir> <points> <more>");
  }
  if (!existsSync(CHROMIUM)) fail(`${CHROMIUM} is missing; ${HINT}`);
  try {
    return {
      chromium: require("playwright-core").chromium,
      keccak: require("ethereum-cryptography/keccak").keccak256,
      canonicalize: require("canonicalize"),
    };
  } catch (error) {
    return fail(`${error.message}; npm packages are missing from contracts/: ${HINT}`);
  }
}

const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();

async function expectLine(word) {
  const { value, done } = await lines.next();
  if (done || value.trim() !== word) {
    fail(`expected "${word}" from the test, got ${value}`);
  }
}

function screenshot(page, name) {
  return page.screenshot({ path: join(artifactDir, name), fullPage: true });
}

/** Waits for `probe()` in the page to return a truthy value. */
async function until(page, what, probe, arg, timeout = 120000) {
  try {
    const handle = await page.waitForFunction(probe, arg, { timeout, polling: 250 });
    return handle.jsonValue();
  } catch (error) {
    const shot = join(artifactDir, "dashboard-failure.png");
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    const feed = await page.$$eval("#feed > li",
      (items) => items.map((li) => `#${li.dataset.id} ${li.dataset.status}`).join(", "))
      .catch(() => "unreadable");
    fail(`timed out waiting for ${what} (screenshot ${shot}; feed: ${feed}): `
      + error.message);
  }
}

async function cryptoSelfTest(page) {
  const lengths = [0, 1, 3, 31, 32, 33, 135, 136, 137, 271, 272, 273, 1000];
  const inputs = lengths
    .map((n) => Array.from({ length: n }, (_, i) => (i * 89 + n) & 0xff));
  const hex = (bytes) => `0x${Buffer.from(bytes).toString("hex")}`;
  const expected = inputs.map((bytes) => hex(reference.keccak(Uint8Array.from(bytes))));
  const samples = [
    { b: [1.0, -0, 1e21, 1e-7, 0.000001, 333333333.33333329, 4.5], a: null },
    {
      "\u20ac": "\u2028\u0007\"\\/", "\ud83d\ude00": true, "\ue000": false,
      z: { y: [], x: {} },
    },
  ];
  const canonical = samples.map((value) => reference.canonicalize(value));

  const result = await page.evaluate(async ({ inputs, samples }) => {
    const { keccak256 } = await import("/assets/keccak.js");
    const { toHex, utf8 } = await import("/assets/bytes.js");
    const { canonicalize } = await import("/assets/jcs.js");
    return {
      empty: toHex(keccak256(new Uint8Array())),
      abc: toHex(keccak256(utf8("abc"))),
      lengths: inputs.map((bytes) => toHex(keccak256(Uint8Array.from(bytes)))),
      canonical: samples.map((value) => canonicalize(value)),
    };
  }, { inputs, samples });

  const vectors = {
    empty: "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470",
    abc: "0x4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45",
  };
  for (const [name, hash] of Object.entries(vectors)) {
    if (result[name] !== hash) fail(`keccak256 vector ${name}: ${result[name]}`);
  }
  result.lengths.forEach((hash, i) => {
    if (hash !== expected[i]) {
      fail(`keccak256 of ${lengths[i]} bytes: ${hash} != ${expected[i]}`);
    }
  });
  result.canonical.forEach((text, i) => {
    if (text !== canonical[i]) fail(`JCS sample ${i}: ${text} != ${canonical[i]}`);
  });
}

/** Prediction insights in the shapes the page accepts, and without one. */
async function forecastShapes(page) {
  const got = await page.evaluate(async () => {
    const { readForecast } = await import("/assets/forecast.js");
    const insight = (data) => ({ subject: "m", event: { timestamp_ms: 1000 }, data });
    return [
      readForecast(insight({ forecast: [5, 6], horizon_ms: 2000, interval: [4, 7] }), 60),
      readForecast(insight({ forecast: 5, interval: { lower: 4, upper: 6 } }), 60),
      readForecast(insight({ forecast: [{ timestamp_ms: 9000, value: 3 }] }), 60),
      readForecast(insight({ horizon_ms: 1000 }), 60),
      readForecast({ subject: "m", data: { forecast: 1 } }, 60),
    ];
  });
  const want = [
    {
      metric: "m",
      points: [{ t: 2000, v: 5, low: 4, high: 7 }, { t: 3000, v: 6, low: 4, high: 7 }],
    },
    { metric: "m", points: [{ t: 1060, v: 5, low: 4, high: 6 }] },
    { metric: "m", points: [{ t: 9000, v: 3 }] },
    null,
    null,
  ];
  const clean = (value) => JSON.parse(JSON.stringify(value));
  if (JSON.stringify(clean(got)) !== JSON.stringify(want)) {
    fail(`forecast shapes: ${JSON.stringify(got)}`);
  }
}

/** The worked example of docs/verification.md, section 9. */
async function workedExample(page) {
  const doc = {
    insight: {
      analysis: "baseline/1",
      block: {
        hash: "0x7de4cbd63393983ce94d289349985731bd27efbaafd0ce406a024d84a19681f1",
        number: 762, timestamp: 1796402186,
      },
      confidence: 1,
      data: {
        category: "revenue", event_type: "purchase", priority: "medium",
        source: "web", user_id: "u-17", value: 129.99,
      },
      event: { id: 1, stream: "redis:business_events", timestamp_ms: 1796402186250 },
      kind: "business", severity: "medium", subject: "revenue",
      summary: "purchase of 129.99 from web: revenue, medium priority", version: 1,
    },
    proof: [
      "0x66629faf4561a9cae5c2e91a41b2f318bdbd13216cbb2e0b6628e7e81318cbde",
      "0xebdfee53bf9b937da0e6fca4d4970909637a3039da061d007ca13d1257699940",
    ],
  };
  const got = await page.evaluate(async (doc) => {
    const { recompute } = await import("/assets/verify.js");
    const { selector } = await import("/assets/eth.js");
    const { hash, leaf, root, length } = recompute(doc);
    return { hash, leaf, root, length, anchorOf: selector("anchorOf(bytes32)") };
  }, doc);
  const want = {
    hash: "0xcb6847c04f8486ffec51c37466d9e7da61eaa6eff3b656e5e3b26678c6019506",
    leaf: "0x682adcbe4294d6eca9634563e16dc851a1a23d38132d9e5af1c13e1ebdaa0bbf",
    root: "0x8bcd5d516d64f75d05705362184f00a25ffe9f48003f7658afdb79269bcb7b6f",
    length: 498, anchorOf: "0xcf4ff901",
  };
  for (const [key, value] of Object.entries(want)) {
    if (got[key] !== value) fail(`worked example ${key}: ${got[key]} != ${value}`);
  }
}

/**
 * Waits for the chart to hold n samples, and checks a moment later that it
 * holds exactly n: every sample once, whether it came live or as history.
 */
async function samples(page, n) {
  const count = () => page.evaluate((metric) => Number(
    document.querySelector(`canvas[data-metric="${metric}"]`)?.dataset.points ?? 0,
  ), METRIC);
  await until(page, `${n} samples on the ${METRIC} chart`, ([metric, n]) => {
    const canvas = document.querySelector(`canvas[data-metric="${metric}"]`);
    return Number(canvas?.dataset.points ?? 0) >= n;
  }, [METRIC, n]);
  await page.waitForTimeout(1000);
  const settled = await count();
  if (settled !== n) fail(`the ${METRIC} chart holds ${settled} samples, not ${n}`);
  return settled;
}

let reference;

async function main() {
  const { chromium, ...implementations } = prerequisites();
  reference = implementations;
  mkdirSync(artifactDir, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), "dashboard-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1440, height: 1000 },
  });
  try {
    await run(context);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

async function run(context) {
  const page = context.pages()[0] ?? await context.newPage();
  const problems = [];
  const base = new URL(baseUrl);
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  // While the node restarts, failed connections are expected.
  let restarting = false;
  const refused = /ERR_CONNECTION_REFUSED|WebSocket connection to/;
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    if (restarting && refused.test(message.text())) return;
    problems.push(`console: ${message.text()}`);
  });
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.hostname !== base.hostname && url.hostname !== "127.0.0.1") {
      problems.push(`request to another host: ${request.url()}`);
    }
  });

  await page.goto(baseUrl);
  await until(page, "the WebSocket to open",
    () => document.body.dataset.connection === "open", undefined, 30000);
  await cryptoSelfTest(page);
  await workedExample(page);
  await forecastShapes(page);
  console.log("ready");

  // Charts: history and live samples, with anomaly marks.
  const points = await samples(page, expectedPoints);
  const anomalies = await until(page, "anomaly marks on the chart", (metric) => {
    const canvas = document.querySelector(`canvas[data-metric="${metric}"]`);
    return Number(canvas?.dataset.anomalies ?? 0);
  }, METRIC);
  const paint = await page.evaluate((metric) => {
    const canvas = document.querySelector(`canvas[data-metric="${metric}"]`);
    const pixels = canvas.getContext("2d")
      .getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted += 1;
    return painted;
  }, METRIC);
  if (paint < 1000) fail(`the ${METRIC} chart painted only ${paint} pixels`);

  // Feed: insights appear and one reaches final.
  const kinds = await until(page, "business and anomaly insights in the feed", () => {
    const kinds = [...document.querySelectorAll("#feed .kind")].map((k) => k.textContent);
    return kinds.includes("business") && kinds.includes("anomaly") && [...new Set(kinds)];
  });
  const finalId = await until(page, "an insight whose status is final",
    () => document.querySelector('#feed > li[data-status="final"]')?.dataset.id);

  // Verification in the browser.
  await page.click(`#feed > li[data-id="${finalId}"]`);
  const verdict = await until(page, "the verification verdict", () => {
    const state = document.getElementById("verify").dataset.verdict;
    return state !== "running" && state;
  });
  const checks = await page.$$eval("#verify-checks li",
    (items) => items.map((li) => ({ id: li.dataset.check, ok: li.dataset.ok === "true",
      text: li.textContent })));
  await screenshot(page, "dashboard-verify.png");
  const failed = checks.filter((check) => !check.ok);
  if (verdict !== "verified" || failed.length > 0 || checks.length < 9) {
    fail(`insight ${finalId} did not verify (${verdict}): ${JSON.stringify(checks)}`);
  }
  await page.click("#verify-close");

  // The socket comes back after the node restarts, and fills the gap.
  await page.evaluate(() => {
    window.connectionStates = [];
    const body = document.body;
    new MutationObserver(() => window.connectionStates.push(body.dataset.connection))
      .observe(body, { attributes: true, attributeFilter: ["data-connection"] });
  });
  restarting = true;
  console.log("restart");
  await expectLine("restarted");
  await until(page, "the WebSocket to reconnect",
    () => window.connectionStates.includes("waiting")
      && document.body.dataset.connection === "open");
  restarting = false;
  const after = await samples(page, points + morePoints);

  // Every insight shown follows its batch to final.
  await until(page, "every insight in the feed to be final", () => {
    const items = [...document.querySelectorAll("#feed > li")];
    return items.length > 0 && items.every((li) => li.dataset.status === "final");
  });
  await page.waitForTimeout(HEALTH_REFRESH_MS);
  await page.evaluate(() => { document.getElementById("feed").scrollTop = 0; });
  await screenshot(page, "dashboard.png");
  await page.setViewportSize({ width: 420, height: 900 });
  await page.waitForTimeout(500);
  await screenshot(page, "dashboard-narrow.png");
  const overflow = await page.evaluate(
    () => document.documentElement.scrollWidth > window.innerWidth);
  if (overflow) fail("the page is wider than a 420-pixel screen");

  if (problems.length > 0) fail(problems.join("\n"));
  const summary = {
    points, after, anomalies, kinds, finalId: Number(finalId), checks: checks.length,
  };
  console.log(`done ${JSON.stringify(summary)}`);
}

main().then(() => process.exit(0), (error) => {
  const text = error instanceof CheckFailed ? error.message : error.stack;
  console.error(`dashboard check failed: ${text}`);
  process.exit(1);
});
