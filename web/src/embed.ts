// The embeddable components alone. Loaded from the room (its /embed.js) by a partner's page,
// they read that room: with the visitor's session on the room's own origin, with the element's
// `token` attribute on another (an origin the room lists in PARITY_EMBED_ORIGINS).
import { setRoom } from './api.js';
import './components/parity-kpi-chart.js';
import './components/parity-kpi-tile.js';

setRoom(new URL(import.meta.url).origin);
