// The official OpenAI Node client against `gemma4 serve`.
// Usage: node tests/openai_client.mjs URL DIR  (DIR: where `npm install openai` ran)
// Prints "openai_client: N passed, M failed" last.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const [url, dir] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(dir), 'package.json'));
const { default: OpenAI } = await import(pathToFileURL(require.resolve('openai')).href);
const client = new OpenAI({ baseURL: url + '/v1', apiKey: 'none', maxRetries: 0, timeout: 30000 });

let passed = 0, failed = 0;
const check = (cond, what) => {
  if (cond) passed++;
  else { failed++; console.log(`FAIL openai_client.mjs: ${what}`); }
};

async function run(name, fn) {
  try { await fn(); } catch (e) { check(false, `${name}: ${e.message}`); }
}

const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello' }];

await run('models', async () => {
  const list = await client.models.list();
  check(list.data.length === 1 && list.data[0].id.endsWith('.gguf'), 'models.list has the model');
});

let whole = null;
await run('chat', async () => {
  const r = await client.chat.completions.create({ model: 'm', messages, max_tokens: 6, temperature: 0 });
  check(r.object === 'chat.completion' && r.choices[0].message.role === 'assistant', 'chat completion shape');
  check(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 6, `usage ${JSON.stringify(r.usage)}`);
  whole = r.choices[0].message.content;
});

await run('chat stream', async () => {
  const stream = await client.chat.completions.create({
    model: 'm', messages, max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let text = '', finish = null, usage = null, chunks = 0;
  for await (const c of stream) {
    chunks++;
    if (c.usage) usage = c.usage;
    if (!c.choices.length) continue;
    text += c.choices[0].delta.content ?? '';
    finish = c.choices[0].finish_reason ?? finish;
  }
  check(chunks >= 2 && finish !== null, `stream ended with a finish reason (${chunks} chunks)`);
  check(usage && usage.completion_tokens >= 1, 'stream usage chunk');
  check(text === (whole ?? ''), `streamed content '${text}' = whole '${whole}'`);
});

await run('completion', async () => {
  const r = await client.completions.create({ model: 'm', prompt: 'hello', max_tokens: 5, temperature: 0 });
  check(r.object === 'text_completion' && r.usage.completion_tokens === 5, 'completion shape');
  const s = await client.completions.create({ model: 'm', prompt: 'hello', max_tokens: 5, temperature: 0, stream: true });
  let text = '';
  for await (const c of s) text += c.choices[0]?.text ?? '';
  check(text === r.choices[0].text, `streamed completion '${text}' = '${r.choices[0].text}'`);
});

await run('tools', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
  const r = await client.chat.completions.create({
    model: 'm', max_tokens: 4, temperature: 0, tools, tool_choice: 'auto',
    messages: [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'c1', content: '{"temp":21}' },
    ],
  });
  check(r.choices.length === 1, 'chat with a tool-call history answers');
});

await run('forced tool call', async () => {
  const tools = [{ type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } }];
  const ask = [{ role: 'user', content: 'What time is it?' }];
  for (const tool_choice of ['required', { type: 'function', function: { name: 'get_time' } }]) {
    const r = await client.chat.completions.create({ model: 'm', messages: ask, max_tokens: 20, temperature: 0, tools, tool_choice });
    const call = r.choices[0].message.tool_calls?.[0];
    check(r.choices[0].finish_reason === 'tool_calls' && call?.function.name === 'get_time' && call.function.arguments === '{}',
      `tool_choice ${JSON.stringify(tool_choice)}: a get_time call (${JSON.stringify(r.choices[0].message)})`);
    const s = await client.chat.completions.create({ model: 'm', messages: ask, max_tokens: 20, temperature: 0, tools, tool_choice, stream: true });
    const names = [];
    let finish = null;
    for await (const c of s) {
      for (const t of c.choices[0]?.delta?.tool_calls ?? []) names.push(t.function?.name);
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    check(names.join() === 'get_time' && finish === 'tool_calls', `streamed forced call: ${names.join()} ${finish}`);
    if (!call) continue;
    const back = await client.chat.completions.create({
      model: 'm', max_tokens: 3, temperature: 0, tools,
      messages: [...ask, r.choices[0].message, { role: 'tool', tool_call_id: call.id, content: '{"time":"12:00"}' }],
    });
    check(back.choices.length === 1, 'the call and its result go back as history');
  }
});

await run('thinking', async () => {
  const r = await client.chat.completions.create({
    model: 'm', messages, max_tokens: 3, temperature: 0, chat_template_kwargs: { enable_thinking: true },
  });
  const off = await client.chat.completions.create({ model: 'm', messages, max_tokens: 3, temperature: 0 });
  check(r.usage.prompt_tokens > off.usage.prompt_tokens, `thinking on adds to the prompt (${r.usage.prompt_tokens} vs ${off.usage.prompt_tokens})`);
});

await run('n, logprobs, logit_bias, json_schema', async () => {
  const r = await client.chat.completions.create({ model: 'm', messages, max_tokens: 4, temperature: 0, n: 3, logprobs: true, top_logprobs: 2 });
  check(r.choices.length === 3 && r.choices.every((c, i) => c.index === i && c.message.content === r.choices[0].message.content),
    `n = 3 greedy: 3 equal choices (${JSON.stringify(r.choices.map(c => c.message.content))})`);
  const lp = r.choices[0].logprobs?.content ?? [];
  check(lp.length === r.usage.completion_tokens / 3 && lp.every(t => t.top_logprobs.length === 2 && t.logprob <= 0 &&
    t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob && Math.abs(t.logprob - t.top_logprobs[0].logprob) < 1e-6),
    `logprobs per token, greedy = the top one (${JSON.stringify(lp[0])})`);
  const s = await client.chat.completions.create({ model: 'm', messages, max_tokens: 4, temperature: 0, n: 2, stream: true });
  const texts = ['', ''];
  for await (const c of s) for (const ch of c.choices) texts[ch.index] += ch.delta.content ?? '';
  check(texts[0] === texts[1] && texts[0] === r.choices[0].message.content, `n = 2 streamed: ${JSON.stringify(texts)}`);
  const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false };
  const j = await client.chat.completions.create({ model: 'm', messages, max_tokens: 60, temperature: 0,
    response_format: { type: 'json_schema', json_schema: { name: 'r', strict: true, schema } } });
  const c = j.choices[0];
  check(c.finish_reason !== 'stop' || typeof JSON.parse(c.message.content).ok === 'boolean', `json_schema answer: ${c.message.content}`);
});

await run('error', async () => {
  try {
    await client.chat.completions.create({ model: 'm', messages: [{ role: 'wizard', content: 'x' }] });
    check(false, 'unknown role must throw');
  } catch (e) {
    check(e.status === 400 && /unknown role/.test(e.message), `unknown role -> 400 APIError (${e.status} ${e.message})`);
  }
});

console.log(`openai_client: ${passed} passed, ${failed} failed`);
