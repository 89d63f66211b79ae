// RFC 8785 JSON Canonicalization Scheme. The RFC defines the text in terms
// of ECMAScript's own JSON serialisation, which this relies on for the
// leaves: JSON.stringify writes numbers as Number.prototype.toString does
// (shortest round-trip digits, exponent outside 1e-6 .. 1e21, -0 as 0) and
// escapes strings exactly as the RFC asks. What is added here is the
// member order, by UTF-16 code units (what the default sort compares),
// and the refusal of values JSON cannot hold.

/** The canonical text of a JSON value (as JSON.parse returns it). */
export function canonicalize(value) {
  if (value === null || typeof value === "boolean") {
    return JSON.stringify(value);
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new Error(`${value} has no JSON form`);
    }
    return JSON.stringify(value);
  }
  if (typeof value === "string") {
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map(canonicalize).join(",")}]`;
  }
  if (typeof value === "object") {
    const members = Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalize(value[key])}`);
    return `{${members.join(",")}}`;
  }
  throw new Error(`a ${typeof value} has no JSON form`);
}
