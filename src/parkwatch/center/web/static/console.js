// parkwatch command center: the live board (server-sent events from /events) and the sound of
// a new fire (WebAudio: no audio file). Plain JavaScript, no library, nothing from the network.
(function () {
  "use strict";
  var board = document.getElementById("board");
  var waiting = document.getElementById("ack-sent") || document.getElementById("ack-waiting");
  if (!board && !waiting) { return; }
  var live = document.getElementById("live");
  var soundButton = document.getElementById("sound");
  var audio = null;
  var known = new Set(board && board.dataset.fires ? board.dataset.fires.split(",") : []);

  function beep() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") {  // a browser allows sound after a click only
        if (soundButton) { soundButton.hidden = false; }
        audio.resume();
      }
      var t = audio.currentTime;
      for (var i = 0; i < 3; i++) {  // three short 880 Hz / 660 Hz pulses
        var osc = audio.createOscillator();
        var gain = audio.createGain();
        osc.frequency.value = i % 2 ? 660 : 880;
        gain.gain.setValueAtTime(0.0001, t + i * 0.35);
        gain.gain.exponentialRampToValueAtTime(0.4, t + i * 0.35 + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, t + i * 0.35 + 0.3);
        osc.connect(gain).connect(audio.destination);
        osc.start(t + i * 0.35);
        osc.stop(t + i * 0.35 + 0.32);
      }
    } catch (e) { /* no audio on this device: the red row stays */ }
  }
  if (soundButton) {
    soundButton.addEventListener("click", function () { soundButton.hidden = true; beep(); });
  }

  function setLive(on) {
    if (!live || !board) { return; }
    live.textContent = on ? board.dataset.live : board.dataset.reconnecting;
    live.className = "live " + (on ? "on" : "off");
  }

  var root = document.documentElement.dataset;  // what the stream did, for tests and support
  root.messages = "0";
  var source = new EventSource("/events");
  source.onopen = function () { root.stream = "open"; setLive(true); };
  source.onerror = function () { root.stream = "error"; setLive(false); };
  source.onmessage = function (msg) {
    root.messages = String(Number(root.messages) + 1);
    if (waiting) {  // an alarm's page waiting for the gateway's answer: show its new state
      var shown = document.getElementById("alarm").dataset;
      var now = JSON.parse(msg.data).seqs[shown.alarm];
      if (String(now) !== shown.seq) { window.location.replace(window.location.pathname); }
      return;
    }
    var data = JSON.parse(msg.data);
    board.innerHTML = data.html;
    var fresh = data.fires.filter(function (id) { return !known.has(id); });
    fresh.forEach(function (id) {
      var row = board.querySelector('tr[data-alarm="' + id + '"]');
      if (row) { row.classList.add("new"); }
    });
    known = new Set(data.fires);
    if (fresh.length) { beep(); }
    board.dataset.updated = String(Date.now());
    setLive(true);
  };
})();
