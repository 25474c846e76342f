# The room as an image: built once, run with DATABASE_URL pointing at PostgreSQL.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY assembly assembly
COPY services services
COPY fixtures fixtures
COPY sql sql
COPY web web
RUN npm run build

FROM node:20-bookworm-slim
ENV NODE_ENV=production PARITY_DATA_DIR=/data PORT=8080 HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY --from=build /app/dist dist
COPY --from=build /app/web/dist web/dist
COPY bin bin
COPY sql sql
COPY fixtures fixtures
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:8080/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["bin/parity"]
CMD ["serve"]
