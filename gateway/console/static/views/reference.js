// The API reference: GET /v1/admin/openapi.json rendered as text (paths, methods, summaries, path
// parameters, and the JSON Schemas of the bodies the API validates with a model: G15, first part).
import { html, useState, useApi, Loading, ErrorBanner } from "../ui.js";

const typeOf = (p) => p.type || (p.anyOf ? p.anyOf.map(typeOf).join(" | ") : p.$ref ? p.$ref.split("/").pop()
  : p.allOf ? p.allOf.map(typeOf).join(" & ") : p.enum ? p.enum.join(" | ") : p.const !== undefined ? JSON.stringify(p.const) : "any")
  + (p.items ? " of " + typeOf(p.items) : "");

function SchemaTable({ name, schema }) {
  if (!schema || !schema.properties) return html`<p class="muted">${name}: ${schema ? typeOf(schema) : "untyped"}</p>`;
  const required = new Set(schema.required || []);
  return html`<table aria-label=${"schema " + name}><thead><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr></thead>
    <tbody>${Object.entries(schema.properties).map(([k, p]) => html`<tr><td><code>${k}</code></td><td>${typeOf(p)}</td>
      <td>${required.has(k) ? "yes" : ""}</td><td>${p.description || ""}</td></tr>`)}</tbody></table>
    ${schema.additionalProperties === false && html`<p class="muted">Unknown fields are refused (400 naming them).</p>`}`;
}

function Body({ schema, components }) {
  if (!schema) return null;
  const ref = schema.$ref || (schema.allOf && schema.allOf[0].$ref);
  const name = ref ? ref.split("/").pop() : null;
  return html`<div>${name ? html`<p>Schema <a href=${"#/api?schema=" + name}>${name}</a></p><${SchemaTable} name=${name} schema=${components[name]} />`
    : html`<p class="muted">${schema.type === "object" && !schema.properties ? "A JSON object (described in the README)." : typeOf(schema)}</p>`}</div>`;
}

export function Reference({ query }) {
  const { data: doc, error } = useApi("/v1/admin/openapi.json");
  const [filter, setFilter] = useState("");
  if (error) return html`<${ErrorBanner} err=${error} />`;
  if (!doc) return html`<${Loading} what="the API reference" />`;
  const components = (doc.components && doc.components.schemas) || {};
  const only = query.get("schema");
  if (only) return html`<div><h1>Schema ${only}</h1><p><a href="#/api">Back to the API reference</a></p>
    <${SchemaTable} name=${only} schema=${components[only]} /></div>`;
  const paths = Object.entries(doc.paths).filter(([p]) => p.includes(filter));
  return html`<div><h1>API reference</h1>
    <p class="muted">${doc.info.title} ${doc.info.version} · the OpenAPI document: <a href="/v1/admin/openapi.json">/v1/admin/openapi.json</a>. ${doc.info.description}</p>
    <label>Filter paths <input name="filter" value=${filter} onInput=${(e) => setFilter(e.target.value)} /></label>
    ${paths.map(([path, ops]) => Object.entries(ops).map(([method, op]) => html`<details class="operation" data-op=${method + " " + path}>
      <summary><code>${method.toUpperCase()} ${path}</code> ${op.summary}</summary>
      ${(op.parameters || []).length > 0 && html`<p>Path parameters: ${op.parameters.map((p) => p.name).join(", ")}</p>`}
      ${op.requestBody && html`<h3>Request body</h3><${Body} schema=${op.requestBody.content["application/json"].schema} components=${components} />`}
      ${op.responses["200"] && op.responses["200"].content && html`<h3>Answer</h3><${Body} schema=${op.responses["200"].content["application/json"].schema} components=${components} />`}
      <p class="muted">Errors: ${Object.keys(op.responses).filter((c) => c !== "200").join(", ")}, each {error: {message, type, param, code}}.</p>
    </details>`))}
    <h2>Schemas</h2>
    <ul>${Object.keys(components).sort().map((n) => html`<li><a href=${"#/api?schema=" + n}>${n}</a></li>`)}</ul>
  </div>`;
}
