// What the page tells the reviewer: outcomes in a polite live region (screen readers read them without moving
// focus), errors in an alert, and the API-key dialog (a native modal <dialog>: it keeps focus inside).

import { ApiError } from "./api.js";

const $ = (id) => document.getElementById(id);

export function announce(text) {
  const region = $("status");
  region.textContent = ""; // a repeat of the same words is announced again
  window.setTimeout(() => {
    region.textContent = text;
  }, 30);
}

export function showError(error) {
  const alert = $("alert");
  alert.textContent = error instanceof ApiError ? `${error.message} (${error.code})` : String(error.message || error);
  alert.hidden = false;
}

export function clearError() {
  $("alert").hidden = true;
  $("alert").textContent = "";
}

// The key, asked for when the API answers 401; the promise rejects when the person closes the dialog.
export function askKey(refused) {
  const dialog = $("key-dialog");
  const form = $("key-form");
  const error = $("key-error");
  error.hidden = !refused;
  error.textContent = refused ? "That key was refused; try another." : "";
  form.reset();
  return new Promise((resolve, reject) => {
    let given = null;
    const submit = (event) => {
      event.preventDefault();
      given = $("key-input").value.trim();
      if (given) dialog.close();
    };
    const closed = () => {
      form.removeEventListener("submit", submit);
      dialog.removeEventListener("close", closed);
      $("key-button").hidden = false;
      if (given) resolve(given);
      else reject(new ApiError(401, "invalid_api_key", "This gateway needs an API key"));
    };
    form.addEventListener("submit", submit);
    dialog.addEventListener("close", closed);
    dialog.showModal();
    $("key-input").focus();
  });
}
