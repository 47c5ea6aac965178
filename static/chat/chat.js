// Progressive enhancement of the chat pages: answers are streamed as they are written, feedback is sent without
// a reload, deleting asks first. Every form also works without this file (a plain post, then a redirect).
(function () {
  "use strict";

  function csrfToken(form) {
    const field = form.querySelector("input[name=csrfmiddlewaretoken]");
    if (field) return field.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Server-Sent Events arrive as "event: <name>\ndata: <json>\n\n" blocks, possibly split across reads.
  function takeEvents(buffer) {
    const events = [];
    let end;
    while ((end = buffer.indexOf("\n\n")) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) events.push({ name: name, data: JSON.parse(data.join("\n")) });
    }
    return { events: events, rest: buffer };
  }

  function showError(message) {
    const box = document.querySelector("[data-ask-error]");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
  }

  function hideError() {
    const box = document.querySelector("[data-ask-error]");
    if (box) box.hidden = true;
  }

  function addToSidebar(url, title) {
    const list = document.querySelector("[data-conversation-list]");
    if (!list || list.querySelector('a[href="' + url + '"]')) return;
    const item = element("li");
    item.setAttribute("aria-current", "page");
    const link = element("a", "", title);
    link.href = url;
    item.append(link, element("time", "", "just now"));
    list.prepend(item);
    const empty = document.querySelector("[data-no-conversations]");
    if (empty) empty.remove();
  }

  async function ask(form) {
    const textarea = form.querySelector("textarea[name=question]");
    const submit = form.querySelector("[data-ask-submit]");
    const transcript = document.querySelector("[data-transcript]");
    const question = textarea.value.trim();
    if (form.dataset.busy || !transcript) return;
    if (!question) {
      showError("Type a question first: this one is empty (or only spaces).");
      textarea.focus();
      return;
    }
    const limit = Number(textarea.dataset.maxChars || 0);
    if (limit && question.length > limit) {
      // Said here rather than cut: the server refuses it with the same message.
      showError("The question is " + question.length + " characters long; at most " + limit + " are allowed.");
      textarea.focus();
      return;
    }
    hideError();

    const data = new FormData(form);
    form.dataset.busy = "1";
    submit.disabled = true;
    const welcome = document.querySelector("[data-welcome]");
    if (welcome) welcome.remove();

    const questionNode = element("article", "message question");
    questionNode.append(element("div", "bubble", question));
    const answerNode = element("article", "message answer");
    answerNode.dataset.state = "pending";
    const status = element("p", "answer-status", "Searching the documents…");
    const body = element("div", "answer-body streaming-text");
    const sources = element("ol", "sources-preview");
    answerNode.append(status, body, sources);
    transcript.append(questionNode, answerNode);
    transcript.setAttribute("aria-busy", "true");
    answerNode.scrollIntoView({ block: "nearest" });
    textarea.value = "";

    let done = false;
    const fail = function (message) {
      answerNode.remove();
      questionNode.remove();
      textarea.value = question;
      showError(message);
    };
    try {
      const response = await fetch(form.dataset.streamUrl, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(form), Accept: "text/event-stream" },
      });
      const type = response.headers.get("Content-Type") || "";
      if (!type.startsWith("text/event-stream")) {
        if (type.startsWith("application/json")) {
          const problem = await response.json();
          fail(problem.detail || "The question could not be asked.");
        } else {
          // Something else answered (the session expired, a proxy error page): let the browser post the form.
          fail("");
          hideError();
          form.submit();
        }
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) break;
        const parsed = takeEvents(buffer + decoder.decode(chunk.value, { stream: true }));
        buffer = parsed.rest;
        for (const event of parsed.events) {
          const payload = event.data;
          if (event.name === "start") {
            questionNode.id = "m-" + payload.question_id;
            const field = form.querySelector("[data-conversation-field]");
            if (field && !field.value) {
              field.value = payload.conversation_id;
              const picker = form.querySelector("[data-picker]");
              if (picker) picker.remove();
              const heading = document.querySelector("[data-conversation-title]");
              if (heading) heading.textContent = payload.title;
              document.title = payload.title + " · Knowledge base";
              history.replaceState(null, "", payload.url);
              addToSidebar(payload.url, payload.title);
            }
          } else if (event.name === "rewritten") {
            if (payload.rewritten_question !== payload.question) {
              status.textContent = "Searching for: " + payload.rewritten_question;
            }
          } else if (event.name === "sources") {
            status.textContent = payload.sources.length
              ? "Reading " + payload.sources.length + " sources…"
              : "Reading the sources…";
            for (const source of payload.sources) {
              sources.append(element("li", "", "[" + source.number + "] " + source.title));
            }
          } else if (event.name === "token") {
            if (answerNode.dataset.state !== "streaming") {
              answerNode.dataset.state = "streaming";
              status.textContent = "Writing the answer…";
            }
            body.append(document.createTextNode(payload.text));
          } else if (event.name === "done") {
            // The stored answer replaces the streamed text: its citations checked, rendered and sanitized by the
            // server exactly as the page renders it.
            const template = document.createElement("template");
            template.innerHTML = payload.html.trim();
            const final = template.content.firstElementChild;
            answerNode.replaceWith(final);
            done = true;
          } else if (event.name === "error") {
            answerNode.remove();
            showError(payload.detail);
            done = true;
          }
        }
      }
      if (!done) {
        answerNode.remove();
        showError("The answer was interrupted. Reload the page to see whether it was stored, or ask again.");
      }
    } catch (error) {
      if (!done) fail("The server could not be reached. Check the connection and try again.");
    } finally {
      delete form.dataset.busy;
      submit.disabled = false;
      transcript.removeAttribute("aria-busy");
      textarea.focus();
    }
  }

  async function sendFeedback(form, submitter) {
    const status = form.querySelector("[data-feedback-status]");
    const data = new FormData(form);
    if (submitter && submitter.name) data.set(submitter.name, submitter.value);
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(form), Accept: "application/json" },
      });
      const body = await response.json();
      if (!response.ok) {
        status.textContent = body.detail || "Your feedback could not be saved.";
        return;
      }
      for (const button of form.querySelectorAll("button[name=rating]")) {
        button.setAttribute("aria-pressed", String(Number(button.value) === body.rating));
      }
      status.textContent = body.rating === 1 ? "Thanks! Saved as helpful." : "Thanks! Saved as not helpful.";
      if (body.rating === -1) {
        const comment = form.querySelector("details");
        if (comment && !body.comment) comment.open = true;
      }
    } catch (error) {
      status.textContent = "Your feedback could not be sent. Check the connection and try again.";
    }
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.matches("[data-confirm]") && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    } else if (form.matches("[data-ask]") && window.ReadableStream && window.TextDecoder) {
      event.preventDefault();
      ask(form);
    } else if (form.matches("[data-feedback]")) {
      event.preventDefault();
      sendFeedback(form, event.submitter);
    }
  });

  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    if (!(target instanceof HTMLTextAreaElement) || !target.form || !target.form.matches("[data-ask]")) return;
    event.preventDefault();
    target.form.requestSubmit();
  });
})();
