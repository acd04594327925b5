// Formatting for the daily report: values by unit, scopes by name, and the labels of the server's keys.
import type { Schemas } from '../../api/client'

export type Report = Schemas['Report']
export type Unit = 'rate' | 'count' | 'minutes' | 'yuan'

/** A value as the report means it: rates are fractions, minutes floats, yuan whole. */
export function fmt(value: number | null | undefined, unit: string): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—'
  if (unit === 'rate') return `${(value * 100).toFixed(1)}%`
  if (unit === 'minutes') return `${value.toFixed(1)} 分钟`
  if (unit === 'yuan') return `¥${value.toLocaleString('zh-CN', { maximumFractionDigits: 0 })}`
  return Number.isInteger(value) ? value.toLocaleString('zh-CN') : value.toFixed(1)
}

/** The number a chart plots: rates in percent (one decimal), the rest as they are. */
export function plotted(value: number | null | undefined, unit: string): number | null {
  if (value === null || value === undefined || !Number.isFinite(value)) return null
  return unit === 'rate' ? Math.round(value * 1000) / 10 : Math.round(value * 100) / 100
}

export function axisLabel(unit: string): string {
  return unit === 'rate' ? '{value}%' : unit === 'yuan' ? '¥{value}' : '{value}'
}

/** "全店", an SOP's or a group's name, or the scope as is. */
export function scopeName(report: Report, scope: string): string {
  if (scope === 'shop') return '全店'
  const sop = report.metrics.funnels?.find((f) => f.sop_id === scope)
  if (sop) return sop.name
  const group = report.metrics.groups?.find((g) => g.group === scope)
  if (group) return group.name
  return scope
}

/** The unit of a metric, from the trends and goals that name it (anomalies carry none). */
export function unitOf(report: Report, metric: string): string {
  const known = report.trends?.find((t) => t.metric === metric)?.unit ?? report.goals?.find((g) => g.metric === metric)?.unit
  if (known) return known
  return /rate|completion|share/.test(metric) ? 'rate' : 'count'
}

/** A goal's comparison as people write it. */
export function op(value: string): string {
  return value === '>=' ? '≥' : value === '<=' ? '≤' : value
}

export const EXIT_REASONS: Record<string, string> = {
  purchased: '已购买', unsubscribed: '退订', churned: '删除好友', replied: '已回复', complained: '投诉', tag: '打标签',
}

export const STEP_KINDS: Record<string, string> = {
  message: '消息', ask: '提问', group_invite: '邀请入群', coupon: '发券', tag: '打标签', wait: '等待', branch: '分支',
  handoff: '转人工', chat: '对话', end: '结束',
}
export const MODES: Record<string, string> = {
  kf: '微信客服', welcome: '欢迎语', member_task: '员工任务', group_task: '群发任务', moment_task: '朋友圈任务',
}
export const GOAL_STATUS: Record<string, { label: string; type: 'success' | 'danger' | 'info' }> = {
  met: { label: '达成', type: 'success' }, missed: { label: '未达成', type: 'danger' }, no_data: { label: '无数据', type: 'info' },
}
export const REASONS: Record<string, string> = {
  'quiet hours': '免打扰时段',
  'customer deleted us (churned)': '客户已删除好友',
  'customer unsubscribed (退订)': '客户已退订',
}
/** A deferral/cancellation reason in Chinese where the server's text is a known English phrase. */
export function reason(text: string): string {
  if (REASONS[text]) return REASONS[text]
  const cap = /^daily cap of (\d+) reached$/.exec(text)
  if (cap) return `已达每日上限 ${cap[1]} 条`
  const paused = /^open (.+): marketing paused$/.exec(text)
  if (paused) return `${paused[1]}未结束，暂停营销`
  const kept = /^today's last (\d+) slot\(s\) kept for time-critical content$/.exec(text)
  if (kept) return `今日最后 ${kept[1]} 条额度留给时效内容`
  const interval = /^minimum interval of (.+) since the last push$/.exec(text)
  if (interval) return `距上次推送不足 ${interval[1]}`
  return text
}
