# ari-proxy container image. Not built on the development machine (no Docker engine there):
# kept minimal; see README "Container".

# 1. Build: compile TypeScript to dist/.
FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# 2. Production dependencies only.
FROM node:20-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force

# 3. Runtime: dist/ and production node_modules, as the image's unprivileged "node" user.
FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
USER node
# Health and metrics (set http_port / ARI_PROXY_HTTP_PORT, and http_host 0.0.0.0 to scrape from outside).
EXPOSE 9090
# Every key can also come from ARI_PROXY_* variables; without the file, they must supply the required ones.
CMD ["node", "dist/main.js", "-config", "/etc/ari-proxy/config.json"]
