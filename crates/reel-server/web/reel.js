// The recording page's player. The page names what to play in the
// #player element's data attributes: data-index (the segmented index of
// the recording, fetched a piece at a time as playback or a seek needs
// it), data-live (a WebSocket that follows an open recording), data-at
// (a moment to open, in seconds, paused).
"use strict";
(function () {
  const el = document.getElementById("player");
  if (!el || !window.AsciinemaPlayer) return;
  const options = { fit: "width", terminalFontSize: "small", idleTimeLimit: undefined };
  let player;
  if (el.dataset.live) {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    player = AsciinemaPlayer.create(
      { driver: "websocket", url: scheme + location.host + el.dataset.live, bufferTime: 0 },
      el,
      { ...options, autoPlay: true },
    );
  } else {
    // A moment to open, paused, showing the screen exactly as it was then:
    // loading starts with the piece that holds it, not the first.
    const at = el.dataset.at !== undefined ? parseFloat(el.dataset.at) : undefined;
    player = AsciinemaPlayer.create(
      { url: el.dataset.index, format: "segmented" },
      el,
      { ...options, preload: true, startAt: at },
    );
    if (at !== undefined) player.seek(at);
  }
  // For tests and the curious: the player of this page.
  window.reelPlayer = player;
})();
