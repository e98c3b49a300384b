// Reading the service's Prometheus text from `/metrics`, for the benches: `scrape` returns every
// sample by its series as printed (`name` or `name{label="value"}`), `value` reads one,
// `histogram` and `quantile` estimate a histogram's quantiles from its cumulative buckets.

/** Fetches `${url}/metrics`: a Map of series → value. */
export const scrape = async (url) => parse(await (await fetch(`${url}/metrics`)).text())

/** Prometheus text format: `series value` per line (prom-client prints no timestamps), `#` lines skipped. */
export const parse = (text) => {
  const samples = new Map()
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue
    // The last space: a label value may hold spaces, a value never does.
    const space = line.lastIndexOf(" ")
    samples.set(line.slice(0, space), Number(line.slice(space + 1)))
  }
  return samples
}

/** One series' value; 0 when the service does not export it. */
export const value = (samples, series) => samples.get(series) ?? 0

/**
 * A histogram without labels of its own: its cumulative buckets as `[upper bound in its unit,
 * count]`, +Inf (Infinity) last, and its total count. With `before` (an earlier scrape), only what
 * was observed since.
 */
export const histogram = (samples, name, before = new Map()) => {
  const buckets = []
  for (const [series, count] of samples) {
    if (!series.startsWith(`${name}_bucket{`)) continue
    const le = /le="([^"]+)"/.exec(series)[1]
    buckets.push([le === "+Inf" ? Infinity : Number(le), count - value(before, series)])
  }
  buckets.sort((a, b) => a[0] - b[0])
  return { buckets, count: value(samples, `${name}_count`) - value(before, `${name}_count`) }
}

/**
 * The q-quantile of a histogram, estimated as the upper bound of the first bucket whose
 * cumulative count is ≥ q × total: an upper estimate, no finer than the bucket bounds, and
 * Infinity when it falls past the last finite bound. null when the histogram is empty.
 */
export const quantile = ({ buckets, count }, q) =>
  count === 0 ? null : buckets.find(([, cumulative]) => cumulative >= q * count)[0]
