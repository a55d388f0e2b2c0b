// Optional enhancement: a "listen" button beside the instructions and each item that reads them
// (and the item's answer options) aloud with the browser's own speech synthesis. The button is
// added only when the browser has a voice for the page's language; nothing is sent anywhere.
// It also notes on the page's form when the read-aloud or a site's recording (<audio>) is played,
// so the saved response records it (hidden fields aid_listen and aid_audio).
(function () {
  "use strict";
  var synth = window.speechSynthesis;
  var root = document.documentElement;
  root.setAttribute("data-listen-script", "loaded");

  function mark(name) {
    var fields = document.querySelectorAll("input[type=hidden][name=" + name + "]");
    for (var i = 0; i < fields.length; i++) { fields[i].value = "1"; }
  }
  // "play" does not bubble: listen in the capture phase for every <audio> of the page
  document.addEventListener("play", function (event) {
    if (event.target && event.target.tagName === "AUDIO") { mark("aid_audio"); }
  }, true);
  if (!synth || typeof synth.getVoices !== "function" || !window.SpeechSynthesisUtterance) { return; }
  var page = (root.getAttribute("lang") || "").toLowerCase();

  function matches(voiceLang) {
    var lang = (voiceLang || "").toLowerCase().replace("_", "-");
    if (page.indexOf("zh") === 0) {  // Simplified Chinese: Mandarin voices, not Cantonese or Taiwanese ones
      return /^(zh|cmn)(-(cn|hans|sg)(-.*)?)?$/.test(lang) || lang.indexOf("cmn-hans") === 0;
    }
    return lang.split("-")[0] === page.split("-")[0];
  }

  function voice() {
    var voices = synth.getVoices() || [];
    for (var i = 0; i < voices.length; i++) { if (matches(voices[i].lang)) { return voices[i]; } }
    return null;
  }

  function textOf(el) {
    var copy = el.cloneNode(true);
    var skip = copy.querySelectorAll(".num, [aria-hidden=true], .listen");
    for (var i = 0; i < skip.length; i++) { skip[i].parentNode.removeChild(skip[i]); }
    return copy.textContent.replace(/\s+/g, " ").trim();
  }

  function say(parts, chosen) {
    var utterance = new window.SpeechSynthesisUtterance(parts.join("\n"));
    utterance.lang = chosen.lang;
    try { utterance.voice = chosen; } catch (e) { /* a voice object the browser does not accept */ }
    synth.cancel();
    synth.speak(utterance);
  }

  var added = false;
  function add() {
    var chosen = voice();
    if (added || !chosen) { return; }
    added = true;
    var label = (document.getElementById("main") || root).getAttribute("data-listen-label") || "Listen";
    var targets = document.querySelectorAll("[data-listen]");
    Array.prototype.forEach.call(targets, function (el) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "listen";
      button.textContent = label;
      button.addEventListener("click", function () {
        var parts = [textOf(el)];
        var group = el.closest("fieldset, form") || el.parentNode;
        var options = el.hasAttribute("data-listen-options") ? group.querySelectorAll("[data-listen-option]") : [];
        Array.prototype.forEach.call(options, function (o) { parts.push(textOf(o)); });
        say(parts, voice() || chosen);
        mark("aid_listen");
      });
      el.insertAdjacentElement("afterend", button);
    });
  }

  add();
  if (!added && typeof synth.addEventListener === "function") { synth.addEventListener("voiceschanged", add); }
})();
