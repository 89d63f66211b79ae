// Compiles InsightAnchor.sol with the pinned solc-js and writes the committed
// artifact, or with --check verifies that the committed artifact matches a
// fresh build. Works from any working directory.
//
//   node contracts/build.mjs          write artifacts/InsightAnchor.json
//   node contracts/build.mjs --check  exit 1 if the committed file differs
//
// Exit codes: 0 success, 1 artifact out of date, 2 setup or compile error.

import { existsSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const CONTRACT = "InsightAnchor";
const SOURCE_FILE = `${CONTRACT}.sol`;
const ARTIFACT = join(HERE, "artifacts", `${CONTRACT}.json`);
const REBUILD = "npm --prefix contracts ci && node contracts/build.mjs";
const SETUP_HINT = "run `npm --prefix contracts ci` from the repository root";

// Settings that determine the bytecode. bytecodeHash "none" keeps the
// metadata hash (which covers source text and paths) out of the bytecode.
const SETTINGS = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 200 },
  metadata: { bytecodeHash: "none" },
};

// Slots documented in InsightAnchor.sol and relied on by eth_getProof checks.
const EXPECTED_SLOTS = { lastRoot: "0", anchors: "1", isAnchorer: "2", owner: "3" };

// Byte offsets of the record's fields inside its single slot.
const EXPECTED_RECORD = { batchId: 0, blockNumber: 8, timestamp: 16, leafCount: 24 };

function fail(code, message) {
  console.error(`build.mjs: ${message}`);
  process.exit(code);
}

function loadSolc() {
  const pinned = JSON.parse(readFileSync(join(HERE, "package.json"), "utf8"))
    .dependencies.solc;
  const local = join(HERE, "node_modules", "solc", "package.json");
  if (!existsSync(local)) {
    fail(2, `solc ${pinned} is not installed in contracts/node_modules; ${SETUP_HINT}`);
  }

  const solc = createRequire(local)("./index.js");
  const version = solc.version();
  if (!version.startsWith(`${pinned}+`)) {
    fail(2, `found solc ${version}, expected ${pinned}; ${SETUP_HINT}`);
  }
  return solc;
}

function compile(solc) {
  const content = readFileSync(join(HERE, SOURCE_FILE), "utf8");
  const wanted = [
    "abi",
    "evm.bytecode.object",
    "evm.deployedBytecode.object",
    "storageLayout",
  ];
  const input = {
    language: "Solidity",
    sources: { [SOURCE_FILE]: { content } },
    settings: {
      ...SETTINGS,
      outputSelection: { [SOURCE_FILE]: { [CONTRACT]: wanted } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));

  const diagnostics = output.errors ?? [];
  for (const d of diagnostics) console.error(d.formattedMessage ?? d.message);
  if (diagnostics.length > 0) {
    fail(2, `solc reported ${diagnostics.length} diagnostic(s); the build must be clean`);
  }
  return output.contracts[SOURCE_FILE][CONTRACT];
}

// Flattens solc's storage layout into {label, slot, offset, type} entries;
// a mapping to a struct also lists the struct's members as `value`.
function describeLayout(layout) {
  const describe = (v) => ({
    label: v.label,
    slot: v.slot,
    offset: v.offset,
    type: layout.types[v.type].label,
  });
  return layout.storage.map((v) => {
    const value = layout.types[layout.types[v.type].value]?.members;
    return value ? { ...describe(v), value: value.map(describe) } : describe(v);
  });
}

function checkStorageLayout(entries) {
  const byLabel = Object.fromEntries(entries.map((v) => [v.label, v]));
  for (const [label, slot] of Object.entries(EXPECTED_SLOTS)) {
    const actual = byLabel[label]?.slot;
    if (actual !== slot) {
      fail(2, `storage slot of ${label} is ${actual}, documented as ${slot}`);
    }
  }

  const record = byLabel.anchors.value ?? [];
  for (const [label, offset] of Object.entries(EXPECTED_RECORD)) {
    const field = record.find((m) => m.label === label);
    if (field?.slot !== "0" || field.offset !== offset) {
      fail(2, `record field ${label} is not at byte ${offset} of the record's slot`);
    }
  }
  if (record.length !== Object.keys(EXPECTED_RECORD).length) {
    fail(2, `the record has ${record.length} fields, documented as 4`);
  }
}

function artifactText(solc, contract, layout) {
  // Keys are listed explicitly so the file's order never depends on solc.
  const artifact = {
    contractName: CONTRACT,
    sourceName: SOURCE_FILE,
    compiler: { name: "solc", version: solc.version(), settings: SETTINGS },
    rebuild: REBUILD,
    abi: contract.abi,
    bytecode: { object: `0x${contract.evm.bytecode.object}` },
    deployedBytecode: { object: `0x${contract.evm.deployedBytecode.object}` },
    storageLayout: layout,
  };
  return `${JSON.stringify(artifact, null, 2)}\n`;
}

function firstDifference(a, b) {
  const linesA = a.split("\n");
  const linesB = b.split("\n");
  for (let i = 0; i < Math.max(linesA.length, linesB.length); i++) {
    if (linesA[i] !== linesB[i]) {
      return `line ${i + 1}:\n  committed: ${linesA[i] ?? "<end of file>"}\n` +
        `  fresh:     ${linesB[i] ?? "<end of file>"}`;
    }
  }
  return "no line differs";
}

function main() {
  const args = process.argv.slice(2);
  const check = args.includes("--check");
  const unknown = args.filter((a) => a !== "--check");
  if (unknown.length > 0) fail(2, `unknown argument(s): ${unknown.join(" ")}`);

  const solc = loadSolc();
  const contract = compile(solc);
  const layout = describeLayout(contract.storageLayout);
  checkStorageLayout(layout);
  const fresh = artifactText(solc, contract, layout);
  const shown = relative(process.cwd(), ARTIFACT) || ARTIFACT;

  if (!check) {
    mkdirSync(dirname(ARTIFACT), { recursive: true });
    writeFileSync(ARTIFACT, fresh);
    console.log(`wrote ${shown} (solc ${solc.version()})`);
    return;
  }

  if (!existsSync(ARTIFACT)) {
    fail(1, `${shown} is missing; rebuild it with \`${REBUILD}\``);
  }
  const committed = readFileSync(ARTIFACT, "utf8");
  if (committed !== fresh) {
    const where = firstDifference(committed, fresh);
    fail(1, `${shown} differs from a fresh build at ${where}\n` +
      `rebuild it with \`${REBUILD}\` and commit the result`);
  }
  console.log(`${shown} matches a fresh build (solc ${solc.version()})`);
}

main();
