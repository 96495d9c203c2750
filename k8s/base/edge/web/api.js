// The public REST API of the origin that served the page, and the page's messages.

export const $ = (id) => document.getElementById(id);

export function say(id, text) {
  $(id).textContent = text;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

// The edge's error shape is {"error": {"code", "message", "status"}}; a plain
// {"code", "message"} or text is read too.
export async function apiError(response) {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    const error = body.error && typeof body.error === "object" ? body.error : body;
    if (error && error.message !== undefined) {
      return new ApiError(response.status, error.status || error.code || "", error.message);
    }
  } catch (_) { /* not JSON: the text itself */ }
  return new ApiError(response.status, response.statusText, text.slice(0, 300) || "no details");
}

// A call with a JSON body (when given); resolves to the response, rejects with an
// ApiError unless it is 2xx. Paths are relative: the page may sit behind a prefix.
export async function api(method, path, body, signal) {
  const init = { method, headers: {}, signal };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await apiError(response);
  return response;
}

export function showError(error) {
  const message = error instanceof Error ? error.message : String(error);
  $("error-text").textContent = message;
  $("error").hidden = false;
}

export function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}
