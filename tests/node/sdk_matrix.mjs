// The official OpenAI Node SDK through the gateway: node sdk_matrix.mjs <base_url> <api_key>
// Prints one line per check ("ok <name>" or "FAIL <name>: <why>") and exits 1 if any failed.
import OpenAI from "openai";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
const model = "gpt-4o-mini";
const weather = {
  type: "function",
  function: {
    name: "get_weather", description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false },
  },
};
let failed = 0;

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok ${name}`);
  } catch (err) {
    failed += 1;
    console.log(`FAIL ${name}: ${err && err.message ? err.message : err}`);
  }
}

function expect(cond, why) {
  if (!cond) throw new Error(why);
}

await check("chat", async () => {
  const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }] });
  expect(r.choices[0].message.content === "Echo: Hi", JSON.stringify(r.choices[0]));
  expect(r.usage && r.usage.total_tokens > 0, "no usage");
});

await check("chat stream with usage", async () => {
  const stream = await client.chat.completions.create({
    model, stream: true, stream_options: { include_usage: true }, messages: [{ role: "user", content: "Hello there friend" }],
  });
  let text = "", usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks += 1;
    if (chunk.choices.length) text += chunk.choices[0].delta.content || "";
    if (chunk.usage) usage = chunk.usage;
  }
  expect(text === "Echo: Hello there friend", text);
  expect(chunks > 2 && usage, `chunks ${chunks}, usage ${JSON.stringify(usage)}`);
});

await check("n", async () => {
  const r = await client.chat.completions.create({ model, n: 3, messages: [{ role: "user", content: "Hi" }] });
  expect(r.choices.length === 3, `${r.choices.length} choices`);
});

await check("tools", async () => {
  const r = await client.chat.completions.create({ model, tools: [weather], tool_choice: "required",
    messages: [{ role: "user", content: "Weather in Paris?" }] });
  const call = r.choices[0].message.tool_calls[0];
  expect(call.function.name === "get_weather" && typeof JSON.parse(call.function.arguments).city === "string",
    JSON.stringify(call));
});

await check("tools streamed", async () => {
  const runner = client.chat.completions.stream({ model, tools: [weather], tool_choice: "required",
    messages: [{ role: "user", content: "Weather in Paris?" }] });
  const final = await runner.finalChatCompletion();
  const call = final.choices[0].message.tool_calls[0];
  expect(JSON.parse(call.function.arguments).city !== undefined, JSON.stringify(call));
});

await check("json mode", async () => {
  const r = await client.chat.completions.create({ model, response_format: { type: "json_object" },
    messages: [{ role: "user", content: "Answer in JSON" }] });
  JSON.parse(r.choices[0].message.content);
});

await check("structured outputs", async () => {
  const schema = { type: "object", properties: { name: { type: "string" }, day: { type: "integer" } },
    required: ["name", "day"], additionalProperties: false };
  const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "An event" }],
    response_format: { type: "json_schema", json_schema: { name: "event", strict: true, schema } } });
  const value = JSON.parse(r.choices[0].message.content);
  expect(typeof value.name === "string" && Number.isInteger(value.day), r.choices[0].message.content);
});

await check("completions", async () => {
  const r = await client.completions.create({ model: "gpt-3.5-turbo-instruct", prompt: "Say hi" });
  expect(typeof r.choices[0].text === "string" && r.choices[0].text.length > 0, JSON.stringify(r));
});

await check("completions streamed", async () => {
  const stream = await client.completions.create({ model: "gpt-3.5-turbo-instruct", prompt: "Say hi", stream: true });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.text || "";
  expect(text.length > 0, "no text");
});

await check("responses", async () => {
  const r = await client.responses.create({ model, input: "Hi" });
  expect(r.output_text.length > 0, JSON.stringify(r));
});

await check("responses streamed", async () => {
  const stream = await client.responses.create({ model, input: "Hi there", stream: true });
  let text = "", completed = false;
  for await (const event of stream) {
    if (event.type === "response.output_text.delta") text += event.delta;
    if (event.type === "response.completed") completed = true;
  }
  expect(text.length > 0 && completed, `${text} ${completed}`);
});

await check("embeddings (base64 by default, decoded by the SDK)", async () => {
  const r = await client.embeddings.create({ model: "text-embedding-3-small", input: ["a", "b"], dimensions: 8 });
  const v = r.data[0].embedding;
  expect(r.data.length === 2 && v.length === 8 && v.every(Number.isFinite), JSON.stringify(v));
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  expect(Math.abs(norm - 1) < 1e-3, `norm ${norm}`);
});

await check("embeddings float", async () => {
  const r = await client.embeddings.create({ model: "text-embedding-3-small", input: "a", encoding_format: "float" });
  expect(r.data[0].embedding.length > 0, "empty");
});

await check("models", async () => {
  const page = await client.models.list();
  const ids = page.data.map((m) => m.id);
  expect(ids.length > 0, "no models");
});

await check("an output stage redacts the trigger answer", async () => {
  const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "show me a test card" }] });
  expect(!/\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}/.test(r.choices[0].message.content), r.choices[0].message.content);
});

process.exit(failed ? 1 : 0);
