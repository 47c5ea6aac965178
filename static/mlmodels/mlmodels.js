// The model pages: the drawing pad of the digit page, and a reload every few seconds while a version trains.
// Without JavaScript the digit page keeps its upload form and the other pages can be reloaded by hand.
(function () {
  "use strict";

  function csrfToken() {
    const field = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (field) return field.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function setupRefresh() {
    const marker = document.querySelector("[data-refresh-seconds]");
    if (!marker) return;
    const seconds = Number(marker.dataset.refreshSeconds) || 5;
    window.setTimeout(function reload() {
      if (document.hidden) {
        document.addEventListener("visibilitychange", reload, { once: true });
      } else {
        window.location.reload();
      }
    }, seconds * 1000);
  }

  function setupPad(section) {
    const canvas = section.querySelector("canvas[data-pad]");
    const context = canvas.getContext("2d");
    const result = document.querySelector("[data-result]");
    const answer = result.querySelector("[data-answer]");
    const status = result.querySelector("[data-status]");
    const seen = result.querySelector("canvas[data-seen]");
    const seenImage = result.querySelector("[data-seen-image]");
    let drawing = false;
    let last = null;
    let inked = false;
    let timer = 0;
    let pending = null;

    section.hidden = false;

    function blank() {
      context.fillStyle = "#000";
      context.fillRect(0, 0, canvas.width, canvas.height);
      inked = false;
    }

    function clear() {
      blank();
      answer.textContent = "?";
      status.textContent = "Draw a digit.";
      showBars(new Array(10).fill(0), -1);
      seen.hidden = true;
    }

    function at(event) {
      const box = canvas.getBoundingClientRect();
      return {
        x: ((event.clientX - box.left) * canvas.width) / box.width,
        y: ((event.clientY - box.top) * canvas.height) / box.height,
      };
    }

    function stroke(from, to) {
      // A thick, round white pen: after scaling to 28x28 it is as wide as an MNIST stroke.
      context.strokeStyle = "#fff";
      context.fillStyle = "#fff";
      context.lineWidth = 20;
      context.lineCap = "round";
      context.lineJoin = "round";
      context.beginPath();
      context.moveTo(from.x, from.y);
      context.lineTo(to.x, to.y);
      context.stroke();
      inked = true;
    }

    canvas.addEventListener("pointerdown", function (event) {
      event.preventDefault();
      canvas.setPointerCapture(event.pointerId);
      drawing = true;
      last = at(event);
      stroke(last, last);
      window.clearTimeout(timer);
    });
    canvas.addEventListener("pointermove", function (event) {
      if (!drawing) return;
      const point = at(event);
      stroke(last, point);
      last = point;
    });
    function lift() {
      if (!drawing) return;
      drawing = false;
      window.clearTimeout(timer);
      timer = window.setTimeout(predict, 250);
    }
    canvas.addEventListener("pointerup", lift);
    canvas.addEventListener("pointercancel", lift);

    section.querySelector("[data-clear]").addEventListener("click", clear);
    section.querySelector("[data-predict]").addEventListener("click", predict);

    function showBars(probabilities, best) {
      probabilities.forEach(function (p, digit) {
        const percent = (100 * p).toFixed(1);
        const bar = result.querySelector('[data-bar="' + digit + '"]');
        const label = result.querySelector('[data-pct="' + digit + '"]');
        const row = result.querySelector('[data-bar-row="' + digit + '"]');
        if (bar) bar.value = Number(percent);
        if (label) label.textContent = percent + " %";
        if (row) row.classList.toggle("best", digit === best);
      });
    }

    function showInput(pixels) {
      const seenContext = seen.getContext("2d");
      const data = seenContext.createImageData(28, 28);
      pixels.forEach(function (value, i) {
        data.data[4 * i] = data.data[4 * i + 1] = data.data[4 * i + 2] = value;
        data.data[4 * i + 3] = 255;
      });
      seenContext.putImageData(data, 0, 0);
      seen.hidden = false;
      if (seenImage) seenImage.hidden = true;
    }

    async function predict() {
      if (!inked) {
        status.textContent = "Draw a digit first.";
        return;
      }
      if (pending) pending.abort();
      const controller = new AbortController();
      pending = controller;
      status.textContent = "Reading…";
      const blob = await new Promise(function (resolve) {
        canvas.toBlob(resolve, "image/png");
      });
      const body = new FormData();
      body.append("image", blob, "drawing.png");
      try {
        const response = await fetch(section.dataset.api, {
          method: "POST",
          body: body,
          credentials: "same-origin",
          headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
          signal: controller.signal,
        });
        const data = await response.json().catch(function () {
          return {};
        });
        if (!response.ok) {
          status.textContent = data.detail || "The server answered " + response.status + ".";
          return;
        }
        answer.textContent = String(data.digit);
        status.textContent =
          (100 * data.probability).toFixed(1) +
          " % sure · " +
          data.model.kind + " v" + data.model.version + " (" + data.architecture + ")";
        showBars(data.probabilities, data.digit);
        showInput(data.input.pixels);
      } catch (error) {
        if (error.name !== "AbortError") status.textContent = "The prediction could not be fetched; try again.";
      } finally {
        if (pending === controller) pending = null;
      }
    }

    blank();
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupRefresh();
    const pad = document.querySelector("[data-digit-pad]");
    if (pad) setupPad(pad);
  });
})();
