// The gateway's API from the page: JSON in and out, the error envelope as ApiError, and the API key.
// The key lives in sessionStorage (this tab only) and travels only as an Authorization header: never in a
// URL, so it stays out of access logs, history and Referer headers.

const KEY_STORAGE = "florence-tagger.api-key";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function apiError(response) {
  try {
    const body = await response.json();
    if (body && body.error) return new ApiError(response.status, body.error.code, body.error.message);
  } catch {
    // not the envelope: a proxy's page, say
  }
  return new ApiError(response.status, `http_${response.status}`, `${response.status} ${response.statusText}`);
}

export class Api {
  // askKey(refused: boolean) => Promise<string>: the page's dialog; it rejects when the person gives up.
  constructor(askKey) {
    this.askKey = askKey;
    this.asking = null; // one dialog for all the requests refused at once (previews load in parallel)
    this.keyed = sessionStorage.getItem(KEY_STORAGE) !== null;
  }

  get key() {
    return sessionStorage.getItem(KEY_STORAGE);
  }

  async request(method, path, { params, body, accept = "application/json" } = {}) {
    const url = new URL(path, window.location.origin);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
    }
    for (;;) {
      const sent = this.key;
      const headers = { Accept: accept };
      if (sent !== null) headers.Authorization = `Bearer ${sent}`;
      const init = { method, headers, credentials: "omit", referrerPolicy: "no-referrer" };
      if (body !== undefined) {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      const response = await fetch(url, init);
      if (response.status !== 401) {
        if (!response.ok && response.status !== 304) throw await apiError(response);
        return response;
      }
      await this.newKey(sent);
    }
  }

  async json(method, path, options) {
    return (await this.request(method, path, options)).json();
  }

  async newKey(refusedKey) {
    if (this.key !== refusedKey) return; // another request already got a new one
    if (!this.asking) {
      if (refusedKey !== null) sessionStorage.removeItem(KEY_STORAGE);
      this.asking = this.askKey(refusedKey !== null).finally(() => {
        this.asking = null;
      });
    }
    const key = await this.asking;
    sessionStorage.setItem(KEY_STORAGE, key);
    this.keyed = true;
  }

  forgetKey() {
    sessionStorage.removeItem(KEY_STORAGE);
  }
}
