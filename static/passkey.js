// Passkeys (WebAuthn) for flex-user's pages: no framework, no build step, no inline script
// (the CSP is script-src 'self'). Each page works without this file; with it, the passkey
// buttons appear where the browser supports passkeys (they start `hidden`).
//
// - /account/two-factor: the add form (`#passkey-add`) asks the server for options, then
//   navigator.credentials.create, then posts the new credential.
// - /sign-in: `#passkey-sign-in` runs navigator.credentials.get for discoverable credentials;
//   where the browser supports conditional mediation, the identifier field's autofill offers the
//   site's passkeys too (`autocomplete="username webauthn"`).
// - /sign-in/two-factor: `#passkey-second-factor` uses a passkey as the second step.
//
// Every POST carries the page's CSRF token in the X-CSRF-Token header and a JSON body; the
// server answers JSON: options ({challenge, publicKey}), a place to go ({location}), or
// {error, message}.
(function () {
  "use strict";

  var supported = typeof window.PublicKeyCredential === "function" &&
    !!navigator.credentials && typeof navigator.credentials.create === "function";

  function csrfToken() {
    var input = document.querySelector("input[name='csrf_token']");
    return input ? input.value : "";
  }

  // base64url <-> ArrayBuffer
  function toBuffer(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var bytes = atob(b64);
    var out = new Uint8Array(bytes.length);
    for (var i = 0; i < bytes.length; i++) { out[i] = bytes.charCodeAt(i); }
    return out.buffer;
  }

  function toText(buffer) {
    if (!buffer) { return null; }
    var bytes = new Uint8Array(buffer);
    var s = "";
    for (var i = 0; i < bytes.length; i++) { s += String.fromCharCode(bytes[i]); }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(publicKey) {
    publicKey.challenge = toBuffer(publicKey.challenge);
    publicKey.user.id = toBuffer(publicKey.user.id);
    (publicKey.excludeCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return publicKey;
  }

  function requestOptions(publicKey) {
    publicKey.challenge = toBuffer(publicKey.challenge);
    (publicKey.allowCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return publicKey;
  }

  function extensions(credential) {
    try { return credential.getClientExtensionResults() || {}; } catch (e) { return {}; }
  }

  // A credential as the server reads it: binary fields as base64url.
  function credentialJSON(credential, response) {
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      extensions: extensions(credential),
      response: response
    };
  }

  function registrationJSON(credential) {
    var response = credential.response;
    return credentialJSON(credential, {
      attestationObject: toText(response.attestationObject),
      clientDataJSON: toText(response.clientDataJSON),
      transports: typeof response.getTransports === "function" ? response.getTransports() : undefined
    });
  }

  function assertionJSON(credential) {
    var response = credential.response;
    return credentialJSON(credential, {
      authenticatorData: toText(response.authenticatorData),
      clientDataJSON: toText(response.clientDataJSON),
      signature: toText(response.signature),
      userHandle: toText(response.userHandle)
    });
  }

  // POST JSON; resolves with {status, body} (body: the JSON answer, or {} when it was not JSON)
  function post(path, data) {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(data || {})
    }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (type.indexOf("application/json") !== 0) {
        return { status: response.status, body: {} };
      }
      return response.json().then(function (body) { return { status: response.status, body: body }; },
        function () { return { status: response.status, body: {} }; });
    });
  }

  function say(status, text, isError) {
    if (!status) { return; }
    status.textContent = text;
    status.classList.toggle("passkey-status--error", !!isError);
  }

  // The message for a failed navigator.credentials call.
  function browserProblem(error) {
    var name = error && error.name;
    if (name === "NotAllowedError" || name === "AbortError") {
      return "The passkey request was cancelled or timed out. Nothing was changed; try again when you are ready.";
    }
    if (name === "InvalidStateError") {
      return "This authenticator already holds a passkey for your account here. Use another one.";
    }
    if (name === "NotSupportedError") {
      return "This browser or authenticator cannot make a passkey this site accepts.";
    }
    if (name === "SecurityError") {
      return "The browser refused passkeys for this address.";
    }
    return "Something went wrong with the passkey. Try again.";
  }

  // After an answer that was not a success: go where it says, or show its message.
  function refused(status, answer) {
    var body = answer.body || {};
    if (body.location && answer.status !== 200) {
      say(status, body.message || "Starting again…", true);
      window.setTimeout(function () { window.location.assign(body.location); }, 1500);
      return;
    }
    if (answer.status === 403) {
      say(status, "This page is out of date. Reload it and try again.", true);
      return;
    }
    say(status, body.message || "The site could not answer. Try again in a moment.", true);
  }

  var UNREACHABLE = "The site could not be reached. Check your connection and try again.";

  // After a finish (null: nothing was sent): go where the server says, or say why not.
  function finished(status, answer) {
    if (!answer) { return; }
    if (answer.status === 200 && answer.body.location) {
      window.location.assign(answer.body.location);
      return;
    }
    refused(status, answer);
  }

  function unsupported(root, text) {
    var note = root.querySelector("[data-passkey-unsupported]");
    if (note) {
      note.textContent = text;
      note.hidden = false;
    }
  }

  function ready(root, button) {
    var note = root.querySelector("[data-passkey-unsupported]");
    if (note) { note.hidden = true; }
    button.hidden = false;
  }

  // ---------- /account/two-factor: add a passkey ----------
  function setUpAdd(form) {
    var button = form.querySelector("#passkey-add");
    var status = form.querySelector(".passkey-status");
    if (!supported) {
      unsupported(form, "This browser does not support passkeys, so none can be added from it.");
      return;
    }
    ready(form, button);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      button.disabled = true;
      say(status, "Asking your browser for a new passkey…", false);
      var name = form.querySelector("input[name='name']");
      var password = form.querySelector("input[name='current_password']");
      var code = form.querySelector("input[name='code']");
      var challenge;
      post(form.getAttribute("data-passkey-start"), {
        name: name ? name.value : "",
        current_password: password ? password.value : "",
        code: code ? code.value : ""
      }).then(function (answer) {
        if (answer.status !== 200) {
          refused(status, answer);
          return null;
        }
        challenge = answer.body.challenge;
        return navigator.credentials.create({ publicKey: creationOptions(answer.body.publicKey) })
          .then(function (credential) {
            say(status, "Saving your passkey…", false);
            return post(form.getAttribute("data-passkey-finish"), {
              challenge: challenge,
              credential: registrationJSON(credential)
            });
          }, function (error) {
            say(status, browserProblem(error), true);
            return null;
          });
      }).then(function (answer) {
        finished(status, answer);
      }).catch(function () {
        say(status, UNREACHABLE, true);
      }).then(function () {
        button.disabled = false;
      });
    });
  }

  // ---------- /sign-in and /sign-in/two-factor: use a passkey ----------
  function setUpUse(root, button, extra) {
    var status = root.querySelector(".passkey-status");
    var start = root.getAttribute("data-passkey-sign-in") || root.getAttribute("data-passkey-second-step");
    var finish = root.getAttribute("data-passkey-finish");
    var conditional = null; // the AbortController of a pending autofill request

    if (!supported || typeof navigator.credentials.get !== "function") {
      unsupported(root, "This browser does not support passkeys. Use your password or a code instead.");
      return;
    }
    ready(root, button);

    // one ceremony: options from the server, the browser's answer back to it
    function run(mediation) {
      var signal;
      if (mediation === "conditional") {
        conditional = new AbortController();
        signal = conditional.signal;
      }
      return post(start, {}).then(function (answer) {
        if (answer.status !== 200) {
          if (mediation !== "conditional") { refused(status, answer); }
          return null;
        }
        var request = { publicKey: requestOptions(answer.body.publicKey) };
        if (mediation === "conditional") {
          request.mediation = "conditional";
          request.signal = signal;
        }
        return navigator.credentials.get(request).then(function (credential) {
          say(status, "Checking your passkey…", false);
          var body = { challenge: answer.body.challenge, credential: assertionJSON(credential) };
          extra(body);
          return post(finish, body);
        }, function (error) {
          if (mediation === "conditional") { return null; }
          say(status, browserProblem(error), true);
          return null;
        });
      }).then(function (answer) {
        finished(status, answer);
      }).catch(function () {
        if (mediation !== "conditional") { say(status, UNREACHABLE, true); }
      });
    }

    button.addEventListener("click", function () {
      if (conditional) {
        conditional.abort();
        conditional = null;
      }
      button.disabled = true;
      say(status, "Waiting for your passkey…", false);
      run("required").then(function () { button.disabled = false; });
    });

    return run;
  }

  function setUpSignIn(root) {
    var button = root.querySelector("#passkey-sign-in");
    var run = setUpUse(root, button, function (body) {
      body.next = root.getAttribute("data-next") || "";
    });
    // the identifier field's autofill, where the browser can offer passkeys there: asked for
    // once the field has the focus (the autofill shows then), so a page merely open asks nothing
    var field = document.querySelector("input[autocomplete~='webauthn']");
    if (run && field && typeof PublicKeyCredential.isConditionalMediationAvailable === "function") {
      PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
        if (!available) { return; }
        var started = false;
        var begin = function () {
          if (started) { return; }
          started = true;
          run("conditional");
        };
        if (document.activeElement === field) { begin(); } else { field.addEventListener("focus", begin); }
      }, function () {});
    }
  }

  function setUpSecondStep(root) {
    var button = root.querySelector("#passkey-second-factor");
    setUpUse(root, button, function (body) {
      var remember = document.getElementById("remember");
      body.remember = !!(remember && remember.checked);
    });
  }

  function init() {
    var add = document.querySelector("form[data-passkey-start]");
    if (add) { setUpAdd(add); }
    var signIn = document.querySelector("[data-passkey-sign-in]");
    if (signIn) { setUpSignIn(signIn); }
    var second = document.querySelector("[data-passkey-second-step]");
    if (second) { setUpSecondStep(second); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
