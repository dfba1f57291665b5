// Previews: fetched with the API key (an <img src> cannot send a header, and a key in a URL would end up in
// logs), shown from blob: URLs, loaded only when a card nears the viewport, a few at a time so they never
// crowd out the reviewer's own requests. The browser's HTTP cache keeps them (ETag, max-age).

const AT_ONCE = 4;

export class Thumbs {
  constructor(api) {
    this.api = api;
    // A card is about 300 CSS pixels wide; sharper on a high-density screen, never over the API's 512.
    this.size = Math.min(512, Math.round(320 * (window.devicePixelRatio || 1)));
    this.waiting = [];
    this.running = 0;
    this.urls = [];
    this.generation = 0;
    this.notes = new WeakMap(); // img -> where its "No preview" reason goes
    this.observer = new IntersectionObserver((entries) => this.seen(entries), { rootMargin: "300px" });
  }

  // Forgets the previous page's previews (their blob: URLs are released) before a new page is shown.
  reset() {
    this.observer.disconnect();
    this.waiting = [];
    this.generation += 1;
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
  }

  watch(img, s3Uri, note) {
    this.observer.observe(img);
    img.dataset.s3Uri = s3Uri;
    this.notes.set(img, note);
  }

  seen(entries) {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      this.observer.unobserve(entry.target);
      this.waiting.push(entry.target);
    }
    this.pump();
  }

  pump() {
    while (this.running < AT_ONCE && this.waiting.length) {
      const img = this.waiting.shift();
      this.running += 1;
      this.load(img, this.generation).finally(() => {
        this.running -= 1;
        this.pump();
      });
    }
  }

  async load(img, generation) {
    const note = this.notes.get(img);
    try {
      const response = await this.api.request("GET", "/v1/thumbnails", {
        params: { s3_uri: img.dataset.s3Uri, size: this.size },
        accept: "image/jpeg",
      });
      const blob = await response.blob();
      if (generation !== this.generation) return; // the page changed meanwhile
      const url = URL.createObjectURL(blob);
      this.urls.push(url);
      img.src = url;
      img.closest(".thumb").classList.add("loaded");
    } catch (error) {
      if (generation !== this.generation) return;
      note.textContent = `No preview: ${error.code || error.message}`;
      note.hidden = false;
    }
  }
}
