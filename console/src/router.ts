import { createRouter, createWebHashHistory, type RouteRecordRaw } from 'vue-router'
import { session } from './auth'

// Hash routes (/console/#/sops): the server only serves index.html and the hashed assets.
const routes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: () => import('./views/LoginView.vue'), meta: { public: true, title: '登录' } },
  { path: '/', redirect: '/conversations' },
  { path: '/sops', name: 'sops', component: () => import('./views/SopListView.vue'), meta: { title: 'SOP 流程' } },
  { path: '/sops/new', name: 'sop-new', component: () => import('./views/SopEditorView.vue'), meta: { title: '新建 SOP' } },
  { path: '/sops/:id', name: 'sop-edit', component: () => import('./views/SopEditorView.vue'), meta: { title: '编辑 SOP' } },
  { path: '/customers', name: 'customers', component: () => import('./views/CustomerListView.vue'), meta: { title: '客户' } },
  { path: '/customers/:id', name: 'customer', component: () => import('./views/CustomerView.vue'), meta: { title: '客户详情' } },
  { path: '/conversations', name: 'conversations', component: () => import('./views/ConversationsView.vue'), meta: { title: '会话工作台' } },
  { path: '/tasks', name: 'tasks', component: () => import('./views/TasksView.vue'), meta: { title: '待办任务' } },
  { path: '/simulator', name: 'simulator', component: () => import('./views/SimulatorView.vue'), meta: { title: '对话模拟器' } },
  { path: '/reports', name: 'reports', component: () => import('./views/ReportsView.vue'), meta: { title: '每日复盘' } },
  { path: '/reports/:day', name: 'report', component: () => import('./views/ReportView.vue'), meta: { title: '复盘报告' } },
  { path: '/knowledge', name: 'knowledge', component: () => import('./views/KnowledgeView.vue'), meta: { title: '知识库' } },
  { path: '/library', name: 'library', component: () => import('./views/LibraryView.vue'), meta: { title: '素材与标签' } },
  { path: '/people', name: 'people', component: () => import('./views/PeopleView.vue'), meta: { title: '成员与审计' } },
  { path: '/:pathMatch(.*)*', redirect: '/conversations' },
]

export const router = createRouter({ history: createWebHashHistory(), routes })

router.beforeEach((to) => {
  if (!to.meta.public && !session.token) return { name: 'login', query: { next: to.fullPath } }
  return true
})

router.afterEach((to) => {
  document.title = `${(to.meta.title as string | undefined) ?? '控制台'} · sopagent`
})
