// JSON-RPC 2.0 over HTTP POST, for the node (through its /rpc route) and
// for the chain.

/** A JSON-RPC error answer, with its code. */
export class RpcError extends Error {
  constructor(error) {
    super(error?.message ?? "JSON-RPC error");
    this.code = error?.code;
  }
}

let nextId = 1;

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${url} answered ${response.status}: ${text.slice(0, 200)}`);
  }
}

/** Calls one method; resolves to its result, rejects with RpcError. */
export async function call(url, method, params = []) {
  const answer = await post(url, { jsonrpc: "2.0", id: nextId++, method, params });
  if (answer.error) throw new RpcError(answer.error);
  return answer.result;
}

/**
 * Calls several methods in one batch request. Resolves to one entry per
 * call, in order: `{result}` or `{error}`.
 */
export async function callBatch(url, calls) {
  if (calls.length === 0) return [];
  const first = nextId;
  nextId += calls.length;
  const body = calls.map(([method, params], i) => (
    { jsonrpc: "2.0", id: first + i, method, params }
  ));
  const answer = await post(url, body);
  if (!Array.isArray(answer)) {
    throw new RpcError(answer.error ?? { message: "not a batch answer" });
  }
  const byId = new Map(answer.map((entry) => [entry.id, entry]));
  return calls.map((_, i) => byId.get(first + i) ?? { error: { message: "no answer" } });
}
