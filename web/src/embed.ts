// The embeddable components alone, for a partner's intranet page served by the room.
import './components/kpi-chart.js';
import './components/kpi-tile.js';
