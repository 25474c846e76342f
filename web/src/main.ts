import './components/parity-app.js';
