// The recording page's player. The page names what to play in the
// #player element's data attributes: data-index (the segmented index of
// the recording, fetched a piece at a time as playback or a seek needs
// it), data-live (a WebSocket that follows an open recording), data-at
// (a moment to open, in seconds, paused) and data-screen (the screen at
// that moment, as terminal output in JSON, with data-cols and data-rows).
// A deep link's page also holds that screen drawn by reeld (.reel-screen),
// shown until the player has drawn the moment itself; its data-player
// names the player's script, loaded here once that screen is painted.
"use strict";
(function () {
  const el = document.getElementById("player");
  if (!el) return;
  if (el.dataset.player && !window.AsciinemaPlayer) {
    // After the frame that paints the page: a task queued from the frame.
    requestAnimationFrame(() =>
      setTimeout(() => {
        const script = document.createElement("script");
        script.src = el.dataset.player;
        script.onload = () => start(el);
        document.head.appendChild(script);
      }, 0),
    );
  } else if (window.AsciinemaPlayer) {
    start(el);
  }

  function start(el) {
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
      const opening = { ...options, preload: true, startAt: at };
      if (el.dataset.screen !== undefined) {
        // Shown at once, as the player's poster, while the seek below
        // fetches what follows; the player then draws the same screen.
        opening.poster = "data:text/plain," + JSON.parse(el.dataset.screen);
        opening.cols = parseInt(el.dataset.cols, 10);
        opening.rows = parseInt(el.dataset.rows, 10);
        opening.preload = false;
      }
      const drawn = el.querySelector(".reel-screen");
      if (drawn) el.classList.add("reel-preview");
      player = AsciinemaPlayer.create(
        { url: el.dataset.index, format: "segmented" },
        el,
        opening,
      );
      if (drawn) {
        const reveal = () => {
          drawn.remove();
          el.classList.remove("reel-preview");
        };
        for (const e of ["seeked", "play", "error"]) player.addEventListener(e, reveal);
      }
      if (at !== undefined) player.seek(at);
    }
    // For tests and the curious: the player of this page.
    window.reelPlayer = player;
  }
})();
