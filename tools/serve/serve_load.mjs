#!/usr/bin/env node
// serve_load.mjs: a bounded load generator for `gemma4 serve` (issue 7).
//
// What it measures: for each concurrency level C, C workers send streaming
// requests back to back (each its own prompt, greedy, a fixed number of new
// tokens with end-of-sequence ignored) until N requests are done. It prints one
// markdown row per level: generated tokens summed over the level's requests
// divided by the level's wall time (aggregate tok/s), and the median and 99th
// percentile (nearest rank; with few requests p99 is the slowest) of the time
// from sending a request to its first non-empty content or reasoning delta.
// Generated tokens come from the usage object the server sends last when asked
// with stream_options.include_usage; without one, content deltas are counted.
// Any failed request, an unreachable server or the global time limit exits 1
// with a one-line error on stderr (a level with failures still prints its row).
//
// How to run it (Node.js 20, no packages), server and client on loopback:
//   ./build/gemma4 serve -m MODEL.gguf --port 8090 --parallel 8 &
//   node tools/serve/serve_load.mjs --url http://127.0.0.1:8090 --clients 1,4,8 \
//        --requests 16 --max-tokens 64
//   kill %1
// --parallel on the server must be at least the largest client count, or the
// extra requests queue and their TTFT includes the wait for a slot.

import { parseArgs } from 'node:util';

const HELP = `usage: node tools/serve/serve_load.mjs --url URL [options]
Aggregate generated tokens/s and time to first token of an OpenAI-compatible
server at several concurrency levels; one markdown table row per level.
  --url URL              server base URL, e.g. http://127.0.0.1:8090 (required)
  --clients LIST         concurrency levels, comma-separated (default: 1,4,8)
  --requests N           requests per level (default: 2 x clients of the level)
  --max-tokens M         tokens generated per request, end of text ignored (default: 32)
  --prompt TEXT          user message; "Request <i>: " is put in front (default: a story request)
  --endpoint KIND        chat (POST /v1/chat/completions) or completions (POST /v1/completions)
                         (default: chat)
  --api-key KEY          sent as "Authorization: Bearer KEY"
  --timeout-s S          limit on the whole run in seconds (default: 600)
  --request-timeout-s S  limit on each request in seconds (default: 300)
  -h, --help             this help`;

function fail(msg) {
  process.stderr.write(`serve_load: ${msg}\n`);
  process.exit(1);
}

function positiveInt(name, text) {
  if (!/^[0-9]+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text)))
    fail(`--${name}: '${text}' is not a positive integer`);
  return Number(text);
}

function positiveSeconds(name, text) {
  const s = Number(text);
  if (!Number.isFinite(s) || s <= 0) fail(`--${name}: '${text}' is not a positive number of seconds`);
  return s;
}

function parseOptions(argv) {
  let v;
  try {
    v = parseArgs({
      args: argv,
      options: {
        url: { type: 'string' },
        clients: { type: 'string', default: '1,4,8' },
        requests: { type: 'string' },
        'max-tokens': { type: 'string', default: '32' },
        prompt: { type: 'string', default: 'Write a short story about a lighthouse keeper.' },
        endpoint: { type: 'string', default: 'chat' },
        'api-key': { type: 'string' },
        'timeout-s': { type: 'string', default: '600' },
        'request-timeout-s': { type: 'string', default: '300' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    fail(`${e.message} (see --help)`);
  }
  if (v.help) {
    process.stdout.write(HELP + '\n');
    process.exit(0);
  }
  if (!v.url) fail('--url is required (see --help)');
  let base;
  try {
    base = new URL(v.url);
  } catch {
    fail(`--url: '${v.url}' is not a URL`);
  }
  if (!['chat', 'completions'].includes(v.endpoint)) fail(`--endpoint: '${v.endpoint}' is not chat or completions`);
  return {
    base: base.href.replace(/\/+$/, ''),
    clients: v.clients.split(',').map((c) => positiveInt('clients', c.trim())),
    requests: v.requests === undefined ? null : positiveInt('requests', v.requests),
    maxTokens: positiveInt('max-tokens', v['max-tokens']),
    prompt: v.prompt,
    chat: v.endpoint === 'chat',
    apiKey: v['api-key'],
    timeoutMs: 1000 * positiveSeconds('timeout-s', v['timeout-s']),
    requestTimeoutMs: 1000 * positiveSeconds('request-timeout-s', v['request-timeout-s']),
  };
}

// fetch reports a refused connection as "fetch failed" with the reason in cause.
function describe(e) {
  if (e.name === 'TimeoutError') return 'timed out';
  const cause = e.cause ? `: ${e.cause.code || e.cause.message}` : '';
  return `${e.message}${cause}`;
}

function headers(opt) {
  const h = { 'Content-Type': 'application/json' };
  if (opt.apiKey) h.Authorization = `Bearer ${opt.apiKey}`;
  return h;
}

async function getJson(opt, path) {
  const url = opt.base + path;
  let res;
  try {
    res = await fetch(url, { headers: headers(opt), signal: AbortSignal.timeout(opt.requestTimeoutMs) });
  } catch (e) {
    fail(`${url}: ${describe(e)}`);
  }
  const text = await res.text();
  if (res.status !== 200) fail(`${url}: HTTP ${res.status}: ${text.trim().slice(0, 200)}`);
  return JSON.parse(text);
}

function requestBody(opt, index) {
  const text = `Request ${index}: ${opt.prompt}`;
  const body = {
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: opt.maxTokens,
    temperature: 0,
    ignore_eos: true,
  };
  if (opt.chat) body.messages = [{ role: 'user', content: text }];
  else body.prompt = text;
  return JSON.stringify(body);
}

// Text a streamed chunk adds, in either endpoint's shape.
function chunkText(chunk) {
  const c = chunk.choices && chunk.choices[0];
  if (!c) return '';
  if (c.delta) return (c.delta.content || '') + (c.delta.reasoning_content || '');
  return c.text || '';
}

// One streaming request; resolves to {ttftMs (null if no text came), totalMs, tokens}
// or throws an Error whose message is one line.
async function timedRequest(opt, index) {
  const path = opt.chat ? '/v1/chat/completions' : '/v1/completions';
  const t0 = performance.now();
  const res = await fetch(opt.base + path, {
    method: 'POST',
    headers: headers(opt),
    body: requestBody(opt, index),
    signal: AbortSignal.timeout(opt.requestTimeoutMs),
  });
  if (res.status !== 200) {
    const text = (await res.text()).trim().replace(/\s+/g, ' ');
    throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
  }
  let ttftMs = null, deltas = 0, usageTokens = null, done = false, pending = '';
  const decoder = new TextDecoder();
  const onEvent = (event) => {
    for (const line of event.split(/\r?\n/)) {
      if (!line.startsWith('data:')) continue;
      const data = line.slice(5).trim();
      if (data === '[DONE]') {
        done = true;
        continue;
      }
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(`error in stream: ${chunk.error.message || JSON.stringify(chunk.error)}`);
      if (chunk.usage) usageTokens = chunk.usage.completion_tokens;
      if (chunkText(chunk)) {
        if (ttftMs === null) ttftMs = performance.now() - t0;
        deltas++;
      }
    }
  };
  for await (const bytes of res.body) {
    pending += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = pending.search(/\r?\n\r?\n/)) >= 0) {
      const sep = pending.slice(end).match(/^\r?\n\r?\n/)[0];
      onEvent(pending.slice(0, end));
      pending = pending.slice(end + sep.length);
    }
  }
  pending += decoder.decode();
  if (pending.trim()) onEvent(pending);
  if (!done) throw new Error('stream ended without data: [DONE]');
  return { ttftMs, totalMs: performance.now() - t0, tokens: usageTokens ?? deltas };
}

// Nearest-rank percentile of an ascending array.
function percentile(sorted, p) {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

// Runs one level: `clients` workers share a counter of requests still to send.
// After a failure no new request starts; those in flight finish.
async function runLevel(opt, clients, nRequests, firstIndex) {
  const results = [];
  const errors = [];
  let next = 0;
  const worker = async () => {
    while (next < nRequests && errors.length === 0) {
      const index = firstIndex + next++;
      try {
        results.push(await timedRequest(opt, index));
      } catch (e) {
        errors.push(`request ${index}: ${describe(e)}`);
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, worker));
  const wallS = (performance.now() - t0) / 1000;
  const tokens = results.reduce((sum, r) => sum + r.tokens, 0);
  const ttft = results.filter((r) => r.ttftMs !== null).map((r) => r.ttftMs).sort((a, b) => a - b);
  // Requests that streamed no text have no TTFT; the count shows how many did.
  const ms = (p) => (ttft.length ? percentile(ttft, p).toFixed(1) : 'n/a') +
    (ttft.length < results.length ? ` (${ttft.length}/${results.length})` : '');
  const row = [clients, results.length + errors.length, tokens, wallS.toFixed(2),
    (tokens / wallS).toFixed(1), ms(50), ms(99), errors.length];
  return { row: `| ${row.join(' | ')} |`, errors };
}

async function main() {
  const opt = parseOptions(process.argv.slice(2));
  const limit = setTimeout(() => fail(`the run took longer than ${opt.timeoutMs / 1000} s (--timeout-s)`),
    opt.timeoutMs);
  const health = await getJson(opt, '/health');
  if (health.status !== 'ok') fail(`${opt.base}/health: status is '${health.status}', not 'ok'`);
  const models = await getJson(opt, '/v1/models');
  const model = models.data && models.data[0] ? models.data[0].id : 'unknown';
  console.log(`model ${model}, ${opt.chat ? 'chat' : 'completions'}, max_tokens ${opt.maxTokens}, ` +
    'greedy, ignore_eos, streaming\n');
  console.log('| clients | requests | generated tokens | wall s | aggregate tok/s | TTFT p50 ms | TTFT p99 ms | errors |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');
  let index = 0;
  for (const clients of opt.clients) {
    const n = opt.requests ?? 2 * clients;
    const { row, errors } = await runLevel(opt, clients, n, index);
    index += n;
    console.log(row);
    if (errors.length) fail(`${errors.length} request(s) failed at ${clients} clients; first: ${errors[0]}`);
  }
  clearTimeout(limit);
}

main().catch((e) => fail(describe(e)));
